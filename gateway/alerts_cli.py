"""``pmpgw alerts``: the alerts the gateway raised, work queues, and their lifecycle.

    pmpgw alerts [--patient P] [--state S] [--severity S] [--role R | --staff ID] [--json]
    pmpgw alerts ack ID --by STAFF [--note TEXT]
    pmpgw alerts resolve ID --by STAFF [--note TEXT]
    pmpgw alerts show ID [--json]

``--role`` / ``--staff`` make a work queue: not-resolved alerts (unless ``--state``), most
severe first, then oldest first. Every step of an alert is recorded with who and when
(``show``). Errors print ``pmpgw: REASON: message`` and exit 2 (``gateway.cli``).
"""

from __future__ import annotations

import argparse
import json

from core.rule_tables import SEVERITY_RANK

from .cli_common import add_db_option, add_query_parser, print_json, print_table
from .clock import format_ms, now_ms
from .store import Store
from .store.store import ALERT_STATES, QUEUE_ROLES

LIST_COLUMNS = ["id", "patient", "rule", "severity", "state", "late", "escalated", "measured", "raised", "age"]


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``alerts`` (list, queues) and ``alerts ack|resolve|show`` to ``pmpgw``."""
    alerts = add_query_parser(commands, "alerts", _list, "alerts and work queues; ack, resolve, show one")
    alerts.description = ("Without an ACTION: list alerts, oldest first, or a work queue (--role, --staff). "
                          "With one: acknowledge, resolve or show an alert.")
    alerts.add_argument("--patient", help="only this patient's alerts (default: every patient)")
    alerts.add_argument("--state", choices=ALERT_STATES,
                        help="only alerts in this state (default: every state; in a queue, open and acknowledged)")
    alerts.add_argument("--severity", choices=tuple(SEVERITY_RANK), help="only this severity (default: all)")
    queue = alerts.add_mutually_exclusive_group()
    queue.add_argument("--role", choices=QUEUE_ROLES,
                       help="the work queue of a role: alerts routed to it, most severe first, then oldest")
    queue.add_argument("--staff", metavar="STAFF",
                       help="the work queue of one staff member: alerts routed to their role of the patients "
                            "they are physician / nurse / personal administrator of (a device administrator: "
                            "every device alert)")
    actions = alerts.add_subparsers(dest="action", metavar="ACTION")
    for name, verb, handler in (("ack", "acknowledge an open alert (stops its escalation)", _ack),
                                ("resolve", "resolve an open or acknowledged alert", _resolve)):
        step = actions.add_parser(name, help=verb, description=f"{verb[0].upper()}{verb[1:]}, recorded with who "
                                                               "and when.")
        step.add_argument("id", type=int, help="the alert's id")
        step.add_argument("--by", required=True, metavar="STAFF", help="who does it: a registered staff id")
        step.add_argument("--note", help="a note kept in the alert's history (default: none)")
        step.set_defaults(handler=handler)
        add_db_option(step)
    show = actions.add_parser("show", help="one alert with its full history")
    show.add_argument("id", type=int, help="the alert's id")
    show.add_argument("--json", action="store_true", help="one JSON document (the alert and its events)")
    show.set_defaults(handler=_show)
    add_db_option(show)


def _list(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        rows = store.alerts(patient=args.patient, state=args.state, severity=args.severity, role=args.role,
                            staff=args.staff, limit=args.limit)
    if args.json:
        print_json(rows)
        return 0
    now = now_ms()
    print_table([{**alert, "measured": format_ms(alert["t"]), "raised": format_ms(alert["raised"]),
                  "age": format_age(now - alert["raised"])} for alert in rows], LIST_COLUMNS)
    return 0


def _ack(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        store.acknowledge_alert(args.id, by=args.by, at_ms=now_ms(), note=args.note)
    print(f"alert {args.id} acknowledged by {args.by}")
    return 0


def _resolve(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        store.resolve_alert(args.id, by=args.by, at_ms=now_ms(), note=args.note)
    print(f"alert {args.id} resolved by {args.by}")
    return 0


def _show(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        alert = store.alert(args.id)
    if args.json:
        print_json(alert)
        return 0
    escalated = f"{alert['escalated']}, last at {format_ms(alert['escalated_at'])}" if alert["escalated"] else "no"
    print(f"alert {alert['id']}: {alert['rule']} {alert['severity']}, {alert['state']}, patient {alert['patient']}")
    for label, value in (("route", ", ".join(alert["route"])), ("measured", format_ms(alert["t"])),
                         ("raised", f"{format_ms(alert['raised'])} ({format_age(now_ms() - alert['raised'])} ago)"),
                         ("late", "yes" if alert["late"] else "no"), ("escalated", escalated),
                         ("occurrences", alert["occurrences"]), ("values", json.dumps(alert["values"])),
                         ("readings", ", ".join(map(str, alert["readings"])) or "-")):
        print(f"  {label:<12}{value}")
    print("history:")
    print_table([{**event, "at": format_ms(event["at"])} for event in alert["events"]],
                ["at", "actor", "action", "note"])
    return 0


def format_age(ms: int) -> str:
    """A duration in ms, as a queue shows an alert's age: 45s, 14m05s, 2h05m, 3d04h."""
    seconds = max(0, ms) // 1000
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
