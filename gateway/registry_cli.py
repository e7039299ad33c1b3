"""``pmpgw patients add``, ``devices add``, ``bind``, ``readings``, ``alerts``, ``quarantine``,
``status``: the registry commands a gateway needs to be used, and what it stored.

Each works on the database (``--db``) whether or not the gateway runs; a running gateway
takes registry changes within a second. Errors print the reason and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import paho.mqtt.client as paho

from .cli_common import add_db_option, broker_address_file, parse_address, parse_time_ms, print_json, print_table
from .store import RegistryError, Store, StoreError


def register(commands: argparse._SubParsersAction) -> None:
    """Add the registry and query commands to ``pmpgw``."""
    patients = commands.add_parser("patients", help="patients under observation").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    add = patients.add_parser("add", help="register a patient")
    add.add_argument("id", help="patient id: 1-64 of [A-Za-z0-9_.-]")
    add.add_argument("--programme", default="AH", help="programmes, comma-separated: AH, DM1, DM2 (default AH)")
    add.add_argument("--tz", default="Europe/Moscow", help="IANA time zone of the patient's home (default Europe/Moscow)")
    add.set_defaults(handler=_patients_add)
    add_db_option(add)

    devices = commands.add_parser("devices", help="tonometers, glucometers, CGMs and hubs").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    add = devices.add_parser("add", help="register a device (a BLE meter behind a hub by its address, AA:BB:..)")
    add.add_argument("id", help="device id, or a BLE meter's address in upper case with colons")
    add.add_argument("--kind", required=True, choices=["bp", "glu", "cgm", "hub"], help="what the device is")
    add.set_defaults(handler=_devices_add)
    add_db_option(add)

    bind = commands.add_parser("bind", help="bind a device to a patient for a time interval")
    bind.add_argument("device")
    bind.add_argument("patient")
    bind.add_argument("--from", dest="start", type=parse_time_ms, default=0,
                      help="start, ISO 8601 or ms UTC (default: the beginning of time)")
    bind.add_argument("--to", dest="end", type=parse_time_ms, default=None, help="end (exclusive; default: open)")
    bind.add_argument("--user", type=int, default=None, help="user slot of a shared meter (default: any slot)")
    bind.set_defaults(handler=_bind)
    add_db_option(bind)

    for name, handler, help_text in [("readings", _readings, "stored readings"), ("alerts", _alerts, "alerts"),
                                      ("quarantine", _quarantine, "readings not stored, with their reason"),
                                      ("status", _status, "the stats JSON (works with the gateway stopped too)")]:
        query = commands.add_parser(name, help=help_text)
        query.add_argument("--json", action="store_true", help="one JSON document instead of a table")
        query.add_argument("--limit", type=int, default=10_000, help="at most this many rows (default 10,000)")
        if name == "readings":
            query.add_argument("--patient", help="only this patient's readings")
        query.set_defaults(handler=handler)
        add_db_option(query)


def _registry_call(action) -> int:
    try:
        action()
    except (RegistryError, StoreError) as error:
        print(f"pmpgw: {error.reason}: {error}", file=sys.stderr)
        return 2
    return 0


def _patients_add(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        return _registry_call(lambda: store.add_patient(args.id, programmes=tuple(args.programme.split(",")), tz=args.tz))


def _devices_add(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        return _registry_call(lambda: store.add_device(args.id, args.kind))


def _bind(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        return _registry_call(lambda: store.bind(args.device, args.patient, args.start, args.end, user=args.user))


def _readings(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        rows = store.readings(args.patient, limit=args.limit)
    keys = ["device", "patient", "seq", "t", "type", "sys", "dia", "pul", "glu"]
    print_json([{k: r[k] for k in keys + ["range", "flags"]} for r in rows]) if args.json else print_table(rows, keys)
    return 0


def _alerts(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        rows = store.alerts(limit=args.limit)
    print_json(rows) if args.json else print_table(rows, ["id", "patient", "rule", "severity", "late", "state", "t"])
    return 0


def _quarantine(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        rows = store.quarantine(limit=args.limit)
    if args.json:
        print_json([{k: r[k] for k in ("device", "reason", "detail", "t", "rx", "topic")} for r in rows])
    else:
        print_table(rows, ["device", "reason", "detail", "rx"])
    return 0


# The stats JSON of DESIGN.md for a database no gateway has reported on yet.
NO_GATEWAY_STATS = {"gw": None, "state": "down", "up_s": 0.0, "rate_1m": 0.0, "batch": {"p50_ms": None, "p99_ms": None},
                    "queue_depth": 0}


def _status(args: argparse.Namespace) -> int:
    """The stats JSON of DESIGN.md: readings, open alerts and size from the database, the
    rest from the running gateway (its retained stats) or, when it is stopped, the last
    stats it saved (``state`` down). ``gateways`` lists every gateway's own stats."""
    live = {stats["gw"]: stats for stats in _live_stats(args.db)}
    with Store.open(args.db) as store:
        saved = store.gateway_stats()
        from_store = {"readings": store.counters(), "alerts_open": store.alerts_open(), "db_bytes": store.db_bytes()}
    gateways = list(live.values()) + [{**stats, "state": "down", "rate_1m": 0.0, "queue_depth": 0}
                                      for stats in saved if stats["gw"] not in live]
    status = {**NO_GATEWAY_STATS, **(gateways[0] if gateways else {}), **from_store, "gateways": gateways}
    if args.json:
        print_json(status)
        return 0
    counts = status["readings"]
    print(f"readings received {counts['received']:,}, stored {counts['stored']:,}, duplicate "
          f"{counts['duplicate']:,}, quarantined {sum(counts['quarantined'].values()):,} {counts['quarantined']}")
    print(f"alerts open: {status['alerts_open'] or 'none'}")
    print(f"database: {status['db_bytes']:,} bytes ({args.db})")
    if not gateways:
        print("gateway: none has run on this database")
    for gw in gateways:
        print(f"gateway {gw['gw']}: {gw.get('state', 'up')}, up {gw['up_s']} s, {gw['rate_1m']} readings/s over the "
              f"last minute, batch p50 {gw['batch']['p50_ms']} ms p99 {gw['batch']['p99_ms']} ms, queue "
              f"{gw['queue_depth']}, broker dropped {gw['mqtt']['broker_dropped']}, store error: "
              f"{gw['store_error'] or 'none'}")
    return 0


def _live_stats(db: str, wait_s: float = 1.0) -> list[dict]:
    """The retained stats of the gateways on the running private broker (none if it is down)."""
    try:
        host, port = parse_address(broker_address_file(db).read_text().strip())
    except (FileNotFoundError, argparse.ArgumentTypeError):
        return []
    got: list[dict] = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pmpgw-status-{time.time_ns()}",
                         protocol=paho.MQTTv5)
    client.on_message = lambda c, u, message: got.append(json.loads(message.payload))
    try:
        client.connect(host, port)
    except OSError:
        return []
    client.subscribe("pmp/v1/gateway/+/stats", qos=1)
    client.loop_start()
    time.sleep(wait_s)
    client.loop_stop()
    client.disconnect()
    return got
