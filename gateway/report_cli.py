"""``pmpgw report protocol`` and ``pmpgw report coverage``: the programme's reports.

A protocol is computed by ``gateway.clinical.protocol`` (its docstring defines every
number) from the readings, bindings and alerts the store holds, recorded in the
``protocols`` table unless ``--draft``, and printed. The coverage report is SQL aggregates
(``Store.coverage_counts``) summed by ``gateway.clinical.coverage``. Errors print
``pmpgw: REASON: message`` and exit 2.
"""

from __future__ import annotations

import argparse
import datetime
import sys

from .clinical import ProtocolError, build_protocol, coverage_report, patient_period, protocol_bundle, protocol_text
from .clinical import twelve_months_before
from .clinical.coverage import GROUP_ROLES
from .cli_common import add_db_option, parse_time_ms, print_json, print_table
from .clock import format_ms, now_ms
from .store import Store

FORMATS = ("text", "json", "fhir")


def parse_date(text: str) -> datetime.date:
    """``YYYY-MM-DD`` -> date, or argparse's error."""
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``report protocol`` and ``report coverage`` to ``pmpgw``."""
    reports = commands.add_parser("report", help="remote-monitoring protocols and the programme's coverage")
    reports = reports.add_subparsers(dest="report", metavar="REPORT", required=True)
    protocol = reports.add_parser(
        "protocol", help="the final remote-monitoring protocol of a patient's period",
        description="Readings and adherence to the plan, home BP (ESH), glucose, CGM time in ranges, alerts and how "
                    "they were handled, devices: see gateway/clinical/protocol.py for every definition. Recorded as "
                    "a final protocol (it counts for the coverage indicator) unless --draft.")
    protocol.add_argument("--patient", required=True, help="patient id")
    protocol.add_argument("--from", dest="first", required=True, type=parse_date, metavar="DATE",
                          help="first day of the period, YYYY-MM-DD in the patient's time zone (included)")
    protocol.add_argument("--to", dest="end", required=True, type=parse_date, metavar="DATE",
                          help="day after the period, YYYY-MM-DD (excluded): --from 2026-11-01 --to 2026-12-01 is "
                               "November")
    protocol.add_argument("--format", choices=FORMATS, default="text",
                          help="text for people (default), json (the protocol as recorded, with its id), or fhir "
                               "(a FHIR R4 Bundle of type collection: devices, observations, CGM summary)")
    protocol.add_argument("--by", metavar="STAFF", help="staff id of who issues the protocol (default: not named)")
    protocol.add_argument("--draft", action="store_true",
                          help="print without recording (default: record it as final, which needs the period to "
                               "have ended)")
    protocol.set_defaults(handler=_protocol)
    add_db_option(protocol)

    coverage = reports.add_parser(
        "coverage", help="the programme indicator, workload per staff member, patients without a device",
        description="Indicator: patients under dispensary observation (AH, DM1, DM2) with >= 1 final protocol "
                    "issued in the 12 months before --as-of, over all such patients.")
    coverage.add_argument("--as-of", dest="as_of", type=parse_time_ms, default=None,
                          help="ISO 8601 or ms UTC (default: now); protocols issued in [as-of - 12 months, as-of) "
                               "count")
    coverage.add_argument("--by", choices=GROUP_ROLES, default=GROUP_ROLES[0],
                          help=f"one row per staff member of this role (default {GROUP_ROLES[0]})")
    coverage.add_argument("--json", action="store_true", help="one JSON document instead of text")
    coverage.add_argument("--limit", type=int, default=50,
                          help="patients without a device to list by id (default 50; the count is always complete)")
    coverage.set_defaults(handler=_coverage)
    add_db_option(coverage)


def _protocol(args: argparse.Namespace) -> int:
    issued = now_ms()
    try:
        with Store.open(args.db) as store:
            patient = store.report_patient(args.patient)
            _, since, until = patient_period(patient, args.first, args.end)
            readings = store.report_readings(args.patient, since, until)
            protocol = build_protocol(readings, patient=patient, first=args.first, end=args.end,
                                      bindings=store.report_bindings(args.patient, since, until),
                                      alerts=store.report_alerts(args.patient, since, until))
            protocol.update(issued=issued, issued_by=args.by, final=not args.draft)
            if not args.draft:
                if until > issued:
                    raise ProtocolError("PERIOD", f"the period ends {format_ms(until)}, after now: a final "
                                                  "protocol needs a period that has ended (use --draft to see it so "
                                                  "far)", args.end.isoformat())
                protocol["id"] = store.save_protocol(args.patient, since, until, protocol, issued_ms=issued,
                                                     issued_by=args.by)
    except ProtocolError as error:
        print(f"pmpgw: {error.reason}: {error}", file=sys.stderr)
        return 2
    if args.format == "fhir":
        print_json(protocol_bundle(protocol, readings))
    elif args.format == "json":
        print_json(protocol)
    else:
        print(protocol_text(protocol))
    return 0


def _coverage(args: argparse.Namespace) -> int:
    as_of = now_ms() if args.as_of is None else args.as_of
    since = twelve_months_before(as_of)
    with Store.open(args.db) as store:
        report = coverage_report(store.coverage_counts(as_of, since, limit=args.limit), as_of=as_of, since=since,
                                 by=args.by)
    if args.json:
        print_json(report)
        return 0
    print(f"Programme coverage at {format_ms(as_of)} (final protocols issued since {format_ms(since)})")
    print(f"Patients under dispensary observation: {report['patients']}; with a protocol: {report['covered']} "
          f"({_pct(report['indicator_pct'])}); without a device: {report['without_device']}")
    for programme, row in report["by_programme"].items():
        print(f"  {programme}: {row['covered']} of {row['patients']} ({_pct(row['indicator_pct'])}), "
              f"without a device {row['without_device']}")
    print()
    print_table(report["groups"], ["id", "name", "patients", "covered", "indicator_pct", "without_device"])
    missing = report["without_device_ids"]
    if missing:
        print(f"\nWithout a device ({len(missing)} of {report['without_device']} listed):")
        print_table(missing, ["id", "personal_admin", "physician"])
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:g} %"
