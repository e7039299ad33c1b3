"""``pmpgw quarantine``: readings not stored as clinical data, with their reason."""

from __future__ import annotations

import argparse

from .cli_common import add_query_parser, print_json, print_table
from .store import Store


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``quarantine`` to ``pmpgw``."""
    add_query_parser(commands, "quarantine", _quarantine, "readings not stored, with their reason")


def _quarantine(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        rows = store.quarantine(limit=args.limit)
    if args.json:
        print_json([{k: r[k] for k in ("device", "reason", "detail", "t", "rx", "topic")} for r in rows])
    else:
        print_table(rows, ["device", "reason", "detail", "rx"])
    return 0
