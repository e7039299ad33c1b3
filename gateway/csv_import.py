"""Running a CSV import command (``pmpgw patients import``, ``pmpgw devices import``): read
the file, parse it, hand its good rows to the store in one call, report every bad row.

Bad rows go to stderr as ``pmpgw: REASON: line N: message``, in line order; stdout gets a
one-line summary or, with ``--json``, one document: file, rows, imported (and the
command's own counts, e.g. bound), checked, bad (every bad row: line, reason, message,
value). Exit status: 0 every row imported (with ``--check``: every row good); 2 nothing
imported because of a bad row (any bad row without ``--skip-bad``, ``--check`` with a bad
row, ``--skip-bad`` without a good row) or an unreadable file (reason FILE);
EXIT_SKIPPED (3) ``--skip-bad`` imported the good rows and skipped the bad ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .cli_common import print_json
from .csv_rows import RowError

EXIT_SKIPPED = 3  # --skip-bad imported the good rows and skipped bad ones


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What the store did with a file's good rows: ``imported`` records written (0 when
    nothing was), ``rejected`` the rows it refused (``gateway.store.Rejected``: index into
    the rows, reason, message, value), ``counts`` the command's own counts (name -> number,
    e.g. bound)."""

    imported: int
    rejected: Sequence[Any]
    counts: dict[str, int]


# Stores a file's good rows in one transaction: (rows, skip_bad=, check_only=, source=).
Write = Callable[..., Outcome]


def add_options(parser: argparse.ArgumentParser) -> None:
    """The file argument and ``--skip-bad``, ``--check``, ``--json`` of an import command."""
    parser.add_argument("file", help="the CSV file (UTF-8)")
    parser.add_argument("--skip-bad", action="store_true",
                        help=f"import the good rows and report the bad ones: exit {EXIT_SKIPPED} if some were bad, "
                             "2 if no row could be imported (default: any bad row imports nothing)")
    parser.add_argument("--check", action="store_true",
                        help="check the file, import nothing (exit 0 if it is good)")
    parser.add_argument("--json", action="store_true", help="a JSON summary on stdout with every bad row")


def run(args: argparse.Namespace, parse: Callable[[str], Any], write: Write, noun: str,
        counts: Sequence[str] = ()) -> int:
    """Import ``args.file``: ``parse`` its text (-> ``.rows``, each with its ``.line``, and
    ``.errors``, RowErrors), ``write`` its good rows, report (see the module docstring);
    ``noun`` names what is imported, ``counts`` the names of the command's own counts (0
    when nothing reached the store). Returns the exit status."""
    try:
        text = pathlib.Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        print(f"pmpgw: FILE: cannot read {args.file} as UTF-8 text: {error}", file=sys.stderr)
        return 2
    parsed = parse(text)
    errors = list(parsed.errors)
    outcome = Outcome(0, [], dict.fromkeys(counts, 0))
    if parsed.rows:
        outcome = write(parsed.rows, skip_bad=args.skip_bad, source=pathlib.Path(args.file).name,
                        check_only=args.check or (bool(errors) and not args.skip_bad))
        errors += [RowError(parsed.rows[r.index].line, r.reason, r.message, r.value) for r in outcome.rejected]
    errors.sort(key=lambda e: e.line)
    for error in errors:
        print(f"pmpgw: {error.reason}: line {error.line}: {error.message}", file=sys.stderr)
    total = len(parsed.rows) + sum(e.reason != "COLUMNS" for e in parsed.errors)
    if args.json:
        print_json({"file": args.file, "rows": total, "imported": outcome.imported, **outcome.counts,
                    "checked": args.check, "bad": [vars(e) for e in errors]})
    elif args.check:
        print(f"{args.file}: {total} rows checked, {len(errors)} bad")
    else:
        print(f"{args.file}: {total} rows, {len(errors)} bad, {outcome.imported} {noun} imported"
              + "".join(f", {n} {name}" for name, n in outcome.counts.items()))
    if not errors:
        return 0
    return EXIT_SKIPPED if args.skip_bad and not args.check and outcome.imported else 2
