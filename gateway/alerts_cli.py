"""``pmpgw alerts``: the alerts the gateway raised."""

from __future__ import annotations

import argparse

from .cli_common import add_query_parser, print_json, print_table
from .store import Store


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``alerts`` to ``pmpgw``."""
    add_query_parser(commands, "alerts", _alerts, "alerts")


def _alerts(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        rows = store.alerts(limit=args.limit)
    print_json(rows) if args.json else print_table(rows, ["id", "patient", "rule", "severity", "late", "state", "t"])
    return 0
