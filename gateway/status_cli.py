"""``pmpgw status``: the gateway's stats JSON, live or as it saved them when it stopped."""

from __future__ import annotations

import argparse
import json
import time

import paho.mqtt.client as paho

from .cli_common import add_query_parser, broker_address_file, parse_address, print_json
from .store import Store


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``status`` to ``pmpgw``."""
    add_query_parser(commands, "status", _status, "the stats JSON (works with the gateway stopped too)")


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
