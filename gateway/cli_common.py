"""What every ``pmpgw`` command shares: the database and data directory, JSON output, times."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import sys

from .store.url import is_url

DEFAULT_DB = "./pmp-data/pmp.db"


def add_db_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=os.environ.get("PMP_DB", DEFAULT_DB),
                        help=f"SQLite database file (default: $PMP_DB, else {DEFAULT_DB}; its folder is the data "
                             "directory), or a PostgreSQL database: postgresql://USER[:PASSWORD]@HOST[:PORT]/NAME "
                             f"(data directory: $PMP_DATA_DIR, else {pathlib.Path(DEFAULT_DB).parent})")


def add_query_parser(commands: argparse._SubParsersAction, name: str, handler, help_text: str
                     ) -> argparse.ArgumentParser:
    """A query command: ``--json``, ``--limit`` and ``--db``, run by ``handler(args)``."""
    query = commands.add_parser(name, help=help_text)
    query.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    query.add_argument("--limit", type=int, default=10_000, help="at most this many rows (default 10,000)")
    query.set_defaults(handler=handler)
    add_db_option(query)
    return query


def data_dir(db: str) -> pathlib.Path:
    """The gateway's data directory (created if missing): the SQLite database's folder; for
    a PostgreSQL URL, $PMP_DATA_DIR, else DEFAULT_DB's folder."""
    if is_url(db):
        folder = pathlib.Path(os.environ.get("PMP_DATA_DIR", pathlib.Path(DEFAULT_DB).parent)).resolve()
    else:
        folder = pathlib.Path(db).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def broker_address_file(db: str) -> pathlib.Path:
    """Where ``pmpgw run`` writes its private broker's HOST:PORT for other commands."""
    return data_dir(db) / "broker" / "address"


def monitor_password_file(db: str) -> pathlib.Path:
    """Where ``pmpgw run`` writes the password ``pmpgw status`` logs in to its private broker with."""
    return data_dir(db) / "broker" / "monitor.password"


def write_private(path: pathlib.Path, text: str) -> None:
    """Write ``text`` to ``path``, readable and writable by the owner only (passwords)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port), or argparse's error."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def parse_time_ms(text: str) -> int:
    """An ISO 8601 time (UTC unless it names an offset) or integer ms -> ms UTC."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither ISO 8601 (2026-11-25T08:00) nor ms since epoch") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return int(when.timestamp() * 1000)


def print_json(value: object) -> None:
    json.dump(value, sys.stdout, default=_jsonable)
    sys.stdout.write("\n")


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"{type(value).__name__} is not JSON")


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A plain aligned table of ``columns`` of ``rows`` (None as '-')."""
    cells = [[("-" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    print(f"({len(rows)} rows)")
