"""``pmpgw patients``, ``staff``, ``devices``, ``bind``, ``unbind``: the registry; and
``readings``, what the gateway stored.

Each works on the database (``--db``) whether or not the gateway runs; a running gateway
takes registry changes (including patients' targets) with its next batch. Changes are
recorded in the audit trail with actor "cli". Errors print ``pmpgw: REASON: message`` and
exit 2 (``pmpgw`` catches the store's errors).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from . import broker_accounts, csv_import, devices_csv, patients_csv
from .cli_common import add_db_option, add_query_parser, parse_time_ms, print_json, print_table, write_private
from .clock import format_ms, now_ms
from .patients_csv import OPTION_SEPARATOR, FieldError
from .store import DEVICE_KINDS, OPERATOR_KINDS, PROGRAMMES, STAFF_ROLES, Store


def register(commands: argparse._SubParsersAction) -> None:
    """Add the registry and readings commands to ``pmpgw``."""
    _register_patients(commands)
    _register_staff(commands)
    _register_devices(commands)

    bind = commands.add_parser("bind", help="bind a device to a patient for a time interval")
    bind.add_argument("device")
    bind.add_argument("patient")
    bind.add_argument("--from", dest="start", type=parse_time_ms, default=0,
                      help="start, ISO 8601 or ms UTC; a reading measured then is the patient's "
                           "(default: the beginning of time)")
    bind.add_argument("--to", dest="end", type=parse_time_ms, default=None,
                      help="end, exclusive: a reading measured then is not the patient's (default: open)")
    bind.add_argument("--user", type=int, default=None, help="user slot of a shared meter (default: any slot)")
    bind.set_defaults(handler=_bind)
    add_db_option(bind)

    unbind = commands.add_parser("unbind", help="end a device's binding (readings measured from then on are "
                                                "no longer the patient's)")
    unbind.add_argument("device")
    unbind.add_argument("--at", type=parse_time_ms, default=None,
                        help="when it ends, ISO 8601 or ms UTC (default: now); the binding holding that time ends")
    unbind.add_argument("--user", type=int, default=None,
                        help="the binding of this user slot (default: the binding for any slot)")
    unbind.set_defaults(handler=_unbind)
    add_db_option(unbind)

    query = add_query_parser(commands, "readings", _readings, "stored readings")
    query.add_argument("--patient", help="only this patient's readings")


def _register_patients(commands: argparse._SubParsersAction) -> None:
    patients = commands.add_parser("patients", help="patients under observation").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    add = patients.add_parser("add", help="register a patient")
    add.add_argument("id", help="patient id: 1-64 of [A-Za-z0-9_.-]")
    add.add_argument("--programme", default="AH",
                     help=f"programmes, comma-separated: {', '.join(PROGRAMMES)} (default AH)")
    add.add_argument("--dispensary", action=argparse.BooleanOptionalAction, default=True,
                     help="under dispensary observation, counted by the coverage indicator (default: yes)")
    add.add_argument("--tz", default=patients_csv.DEFAULT_TZ,
                     help=f"IANA time zone of the patient's home (default {patients_csv.DEFAULT_TZ})")
    add.add_argument("--physician", help="attending physician's staff id (default: none)")
    add.add_argument("--nurse", help="nurse's staff id (default: none)")
    add.add_argument("--personal-admin", help="personal administrator's staff id (default: none)")
    add.add_argument("--bp-target", metavar="SYS/DIA",
                     help="home BP target in mmHg, e.g. 130/80: BP_HOME_HIGH fires at a 7-day mean at or above "
                          "it (default 135/85)")
    add.add_argument("--glucose-range", metavar="LOW-HIGH",
                     help="target glucose range in mmol/L for time in range, e.g. 4-9 (default 3.9-10)")
    add.add_argument("--plan", metavar="METRIC=DAYS,...",
                     help="measurement plan: a reading of each metric (bp, glu, cgm) is expected every DAYS days, "
                          "e.g. bp=1,glu=3 (default: every 3 days for each metric of the programmes)")
    add.set_defaults(handler=_patients_add)
    add_db_option(add)

    query = add_query_parser(patients, "list", _patients_list, "list patients (table, or --json)")
    query.add_argument("--programme", choices=PROGRAMMES, help="only patients in this programme")
    query.add_argument("--physician", help="only this physician's patients")
    query.add_argument("--nurse", help="only this nurse's patients")
    query.add_argument("--personal-admin", help="only this personal administrator's patients")

    show = patients.add_parser("show", help="one patient: fields, targets, devices bound now and before")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="one JSON document instead of text")
    show.set_defaults(handler=_patients_show)
    add_db_option(show)

    load = patients.add_parser(
        "import", help="register patients from a CSV file, all or nothing",
        description="Register the patients of a CSV file in one transaction. Header row, then one patient per "
                    f"row; columns (only id required): {', '.join(patients_csv.COLUMNS)}. Fields are separated "
                    "by ',' (or ';' when the header has ';' and no ','); inside a cell, programmes and plan "
                    "entries are separated by '|' (AH|DM2, bp=1|glu=3). Empty cells take the defaults of "
                    "'patients add'. If any row is bad, nothing is imported and every bad row is reported "
                    "on stderr with its line number and reason (exit 2). Exit 0: every row imported.")
    csv_import.add_options(load)
    load.set_defaults(handler=_patients_import)
    add_db_option(load)


def _register_staff(commands: argparse._SubParsersAction) -> None:
    staff = commands.add_parser("staff", help="physicians, nurses, administrators").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    add = staff.add_parser("add", help="register a staff member")
    add.add_argument("id", help="staff id: 1-64 of [A-Za-z0-9_.-]")
    add.add_argument("--name", required=True, help="full name")
    add.add_argument("--role", required=True, choices=STAFF_ROLES, help="what they do")
    add.set_defaults(handler=_staff_add)
    add_db_option(add)
    query = add_query_parser(staff, "list", _staff_list, "list staff (table, or --json)")
    query.add_argument("--role", choices=STAFF_ROLES, help="only this role")


def _register_devices(commands: argparse._SubParsersAction) -> None:
    devices = commands.add_parser("devices", help="tonometers, glucometers, CGMs and hubs").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    add = devices.add_parser("add", help="register a device (a BLE meter behind a hub by its address, AA:BB:..); "
                                         "a device the gateway registered as unknown takes the kind")
    add.add_argument("id", help="device id, or a BLE meter's address in upper case with colons")
    add.add_argument("--kind", required=True, choices=[k for k in DEVICE_KINDS if k != "unknown"],
                     help="what the device is")
    add.add_argument("--json", action="store_true",
                     help="one JSON document: id, kind, index, and the broker account (username, password)")
    add.set_defaults(handler=_devices_add)
    add_db_option(add)

    credentials = devices.add_parser(
        "credentials", help="issue a device or hub a new broker password (the old one stops working)",
        description="Issue a new broker password to a registered device or hub (user name: its id) and show it "
                    "once: only its hash is kept. The old password stops working; a running gateway's private "
                    "broker takes the change within a second.")
    credentials.add_argument("id")
    credentials.add_argument("--json", action="store_true", help="one JSON document: username, password")
    credentials.set_defaults(handler=_devices_credentials)
    add_db_option(credentials)

    load = devices.add_parser(
        "import", help="register devices, and bind them to patients, from a CSV file, all or nothing",
        description="Register the devices of a CSV file and bind them to registered patients in one transaction. "
                    f"Header row, then one device per row; columns (id and kind required): "
                    f"{', '.join(devices_csv.COLUMNS)}. id: as 'devices add'; kind: {', '.join(OPERATOR_KINDS)} "
                    "(a device the gateway registered as unknown takes it); patient: a registered patient to bind "
                    "the device to, as 'bind' does (default: not bound); from: the binding's start, ISO 8601 or ms "
                    "UTC (default: the beginning of time); to: its end, exclusive (default: open); user: the slot "
                    "of a shared meter (default: any slot). A device is on several rows only to be bound several "
                    "times (slots, successive patients). Fields are separated by ',' (or ';' when the header has "
                    "';' and no ','). If any row is bad (a registered or retired device, an unknown patient, an "
                    "overlapping binding, ...), nothing is imported and every bad row is reported on stderr with "
                    "its line number and reason (exit 2). Exit 0: every row imported.")
    csv_import.add_options(load)
    load.add_argument("--credentials", metavar="OUT.csv", default=None,
                      help="issue broker accounts to the imported devices and hubs and write id,password rows to "
                           "this new owner-only file (default: no accounts; pmpgw devices credentials ID issues one)")
    load.set_defaults(handler=_devices_import)
    add_db_option(load)

    query = add_query_parser(devices, "list", _devices_list,
                             "list devices with the patients bound to them now (table, or --json)")
    query.add_argument("--kind", choices=DEVICE_KINDS, help="only devices of this kind")

    show = devices.add_parser("show", help="one device and the history of its bindings")
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="one JSON document instead of text")
    show.set_defaults(handler=_devices_show)
    add_db_option(show)

    retire = devices.add_parser("retire", help="take a device out of service: its bindings end, its broker "
                                               "account is revoked, it cannot be bound again")
    retire.add_argument("id")
    retire.add_argument("--at", type=parse_time_ms, default=None, help="when, ISO 8601 or ms UTC (default: now)")
    retire.set_defaults(handler=_devices_retire)
    add_db_option(retire)


def _time(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def _invalid(error: FieldError) -> int:
    print(f"pmpgw: INVALID: {error}", file=sys.stderr)
    return 2


def _patients_add(args: argparse.Namespace) -> int:
    try:
        programmes = patients_csv.parse_programmes(args.programme, OPTION_SEPARATOR)
        targets = patients_csv.targets_of(args.bp_target, args.glucose_range, args.plan, OPTION_SEPARATOR)
    except FieldError as error:
        return _invalid(error)
    with Store.open(args.db) as store:
        idx = store.add_patient(args.id, programmes=programmes, tz=args.tz, dispensary=args.dispensary,
                                physician=args.physician, nurse=args.nurse, personal_admin=args.personal_admin,
                                targets=targets)
    print(f"patient {args.id} added (index {idx})")
    return 0


def _patient_row(patient: dict) -> dict:
    return {**patient, "programmes": ",".join(patient["programmes"]), "dispensary": "yes" if patient["dispensary"]
            else "no", "targets": json.dumps(patient["targets"], separators=(",", ":")) if patient["targets"] else None}


def _patients_list(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        rows = store.patients(programme=args.programme, physician=args.physician, nurse=args.nurse,
                              personal_admin=args.personal_admin, limit=args.limit)
    if args.json:
        print_json(rows)
    else:
        print_table([_patient_row(p) for p in rows],
                    ["id", "programmes", "dispensary", "tz", "physician", "nurse", "personal_admin", "targets"])
    return 0


def _bindings_table(bindings: list[dict], first: str) -> None:
    print_table([{**b, "from": _time(b["from"]), "to": _time(b["to"]), "current": "yes" if b["current"] else ""}
                 for b in bindings], [first, "user", "from", "to", "current"] if first == "patient"
                else [first, "kind", "user", "from", "to", "current"])


def _patients_show(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        patient = store.patient(args.id)
    if args.json:
        print_json(patient)
        return 0
    row = _patient_row(patient)
    offset = patient["utc_offset_min"]
    row["tz"] = f"{patient['tz']} (UTC{'+' if offset >= 0 else '-'}{abs(offset) // 60:02d}:{abs(offset) % 60:02d})"
    row["created"] = _time(patient["created"])
    for key in ("id", "programmes", "dispensary", "tz", "physician", "nurse", "personal_admin", "targets", "created"):
        print(f"{key + ':':16}{'-' if row[key] is None else row[key]}")
    print("bindings:")
    _bindings_table(patient["bindings"], "device")
    return 0


def _patients_import(args: argparse.Namespace) -> int:
    def write(rows: list[patients_csv.Row], **options) -> csv_import.Outcome:
        with Store.open(args.db) as store:
            result = store.add_patients([row.patient for row in rows], **options)
        return csv_import.Outcome(result.added, result.rejected, {})
    return csv_import.run(args, patients_csv.parse, write, "patients")


def _devices_import(args: argparse.Namespace) -> int:
    def write(rows: list[devices_csv.Row], **options) -> csv_import.Outcome:
        with Store.open(args.db) as store:
            result = store.add_devices([row.device for row in rows], **options)
            passwords = {}
            if args.credentials and result.added and not options["check_only"]:
                connecting = {row.device["id"]: None for row in rows
                              if broker_accounts.connects(row.device["id"], row.device["kind"])}
                passwords = store.issue_credentials(list(connecting))
                write_private(pathlib.Path(args.credentials),
                              "id,password\n" + "".join(f"{d},{p}\n" for d, p in passwords.items()))
        return csv_import.Outcome(result.added, result.rejected, {"bound": result.bound, "accounts": len(passwords)})
    return csv_import.run(args, devices_csv.parse, write, "devices", counts=("bound", "accounts"))


def _staff_add(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        store.add_staff(args.id, args.name, args.role)
    print(f"staff member {args.id} added ({args.role})")
    return 0


def _staff_list(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        rows = store.staff(role=args.role, limit=args.limit)
    print_json(rows) if args.json else print_table(rows, ["id", "name", "role"])
    return 0


def _devices_add(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        idx = store.add_device(args.id, args.kind)
        passwords = store.issue_credentials([args.id]) if broker_accounts.connects(args.id, args.kind) else {}
    if args.json:
        print_json({"id": args.id, "kind": args.kind, "index": idx,
                    "username": args.id if passwords else None, "password": passwords.get(args.id)})
        return 0
    print(f"device {args.id} registered as {args.kind} (index {idx})")
    if passwords:
        _print_account(args.id, passwords[args.id])
    else:
        print("no broker account: a BLE meter is relayed by its hub")
    return 0


def _print_account(device_id: str, password: str) -> None:
    print(f"broker account: username {device_id}, password {password}")
    print(f"(shown only now, keep it in the device; pmpgw devices credentials {device_id} issues a new one)")


def _devices_credentials(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        password = store.issue_credentials([args.id])[args.id]
    if args.json:
        print_json({"username": args.id, "password": password})
    else:
        _print_account(args.id, password)
    return 0


def _device_row(device: dict) -> dict:
    return {**device, "created": _time(device["created"]), "retired": _time(device["retired"]),
            "patients": ",".join(device["patients"]) or None}


def _devices_list(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        rows = store.devices(kind=args.kind, limit=args.limit)
    if args.json:
        print_json(rows)
    else:
        print_table([_device_row(d) for d in rows], ["id", "kind", "patients", "created", "retired"])
    return 0


def _devices_show(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        device = store.device(args.id)
    if args.json:
        print_json(device)
        return 0
    row = _device_row(device)
    for key in ("id", "kind", "patients", "created", "retired"):
        print(f"{key + ':':10}{'-' if row[key] is None else row[key]}")
    print("bindings:")
    _bindings_table(device["bindings"], "patient")
    return 0


def _devices_retire(args: argparse.Namespace) -> int:
    at = now_ms() if args.at is None else args.at
    with Store.open(args.db) as store:
        ended = store.retire_device(args.id, at)
    print(f"device {args.id} retired at {format_ms(at)}; {ended} binding(s) ended; its broker account (if any) "
          "is revoked")
    return 0


def _bind(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        binding = store.bind(args.device, args.patient, args.start, args.end, user=args.user)
    print(f"device {args.device} bound to patient {args.patient} from {format_ms(args.start)} to "
          f"{'open end' if args.end is None else format_ms(args.end)} (binding {binding})")
    return 0


def _unbind(args: argparse.Namespace) -> int:
    at = now_ms() if args.at is None else args.at
    with Store.open(args.db) as store:
        patient = store.unbind(args.device, at, user=args.user)
    print(f"device {args.device} unbound from patient {patient} at {format_ms(at)}")
    return 0


def _readings(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        rows = store.readings(args.patient, limit=args.limit)
    keys = ["device", "patient", "seq", "t", "type", "sys", "dia", "pul", "glu"]
    print_json([{k: r[k] for k in keys + ["range", "flags"]} for r in rows]) if args.json else print_table(rows, keys)
    return 0
