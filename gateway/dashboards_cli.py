"""``pmpgw dashboards``: broker accounts of clinicians' dashboards, which receive alerts.

A dashboard logs in as ``pmpgw-dash-{name}`` and may only read ``pmp/v1/alert/#`` and the
gateways' state and stats (``gateway.broker_accounts.ROLE_TOPICS``); a running gateway's
private broker takes an account issued or revoked within a second.
"""

from __future__ import annotations

import argparse

from . import broker_accounts
from .cli_common import add_db_option, print_json, print_table
from .clock import format_ms
from .store import Store


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``dashboards`` to ``pmpgw``."""
    dashboards = commands.add_parser(
        "dashboards", help="broker accounts of clinicians' dashboards (they receive alerts)").add_subparsers(
        dest="action", metavar="ACTION", required=True)
    add = dashboards.add_parser("add", help="issue dashboard NAME a broker password (shown once; again: a new one)")
    add.add_argument("name", help="1-64 characters of [A-Za-z0-9_.-] with the prefix, e.g. ward-3")
    add.add_argument("--json", action="store_true", help="one JSON document: username, password")
    add.set_defaults(handler=_add)
    add_db_option(add)
    revoke = dashboards.add_parser("revoke", help="delete dashboard NAME's account (it is disconnected)")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_revoke)
    add_db_option(revoke)
    listing = dashboards.add_parser("list", help="dashboard accounts (table, or --json)")
    listing.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    listing.set_defaults(handler=_list)
    add_db_option(listing)


def _add(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        password = store.issue_dashboard_account(args.name)
    username = broker_accounts.dashboard_username(args.name)
    if args.json:
        print_json({"username": username, "password": password})
    else:
        print(f"dashboard account: username {username}, password {password}")
        print("(shown only now; it may read pmp/v1/alert/# and pmp/v1/gateway/#)")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        store.revoke_dashboard_account(args.name)
    print(f"dashboard {args.name}: broker account revoked")
    return 0


def _list(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        rows = store.dashboards()
    if args.json:
        print_json(rows)
    else:
        print_table([{**r, "issued": format_ms(r["issued"])} for r in rows], ["name", "username", "issued"])
    return 0
