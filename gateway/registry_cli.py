"""``pmpgw patients add``, ``devices add``, ``bind``, ``readings``: the registry commands a
gateway needs to be used, and the readings it stored.

Each works on the database (``--db``) whether or not the gateway runs; a running gateway
takes registry changes within a second. Errors print the reason and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from .cli_common import add_db_option, add_query_parser, parse_time_ms, print_json, print_table
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

    query = add_query_parser(commands, "readings", _readings, "stored readings")
    query.add_argument("--patient", help="only this patient's readings")


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


