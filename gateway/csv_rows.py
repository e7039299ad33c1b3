"""The rows of an import file (``pmpgw patients import``, ``pmpgw devices import``) as
named cells, with their line numbers. Pure: text in, rows and row errors out.

The format both files share: UTF-8 (a byte-order mark is allowed), one header row naming
the columns (in any order, case-insensitive), then one record per row. Blank lines are
skipped; missing cells at the end of a row are empty. Fields are separated by ``,`` or,
when the header has a ``;`` and no ``,`` (spreadsheets in locales with a decimal comma), by
``;``; a field may be quoted (``"..."``, which may span lines).

Errors are ``RowError``: ``line`` (1-based, the line the row starts on), ``reason``,
``message``, ``value`` (the offending text). Reasons found here: ``COLUMNS`` (header: a
required column missing, an unknown or repeated column, not CSV, empty file; line 1, and
no row is read), ``FIELDS`` (a row has more cells than the header, or is not CSV: a stray
or unclosed quote), ``INVALID`` (a required cell is empty).
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator, Sequence


@dataclasses.dataclass(frozen=True)
class RowError:
    """A bad row: line (1-based), reason code, message, offending text."""

    line: int
    reason: str
    message: str
    value: str


def _header(names: list[str], columns: Sequence[str], required: Sequence[str]
            ) -> tuple[list[str], RowError | None]:
    found = [name.strip().lower() for name in names]
    unknown = [c for c in found if c not in columns]
    repeated = sorted({c for c in found if found.count(c) > 1})
    missing = [c for c in required if c not in found]
    problem = (f"unknown column {unknown[0]!r}: use {', '.join(columns)}" if unknown else
               f"column {repeated[0]!r} appears twice" if repeated else
               f"no {missing[0]!r} column" if missing else None)
    value = unknown[0] if unknown else repeated[0] if repeated else ",".join(names)
    return found, None if problem is None else RowError(1, "COLUMNS", problem, value)


def read(text: str, columns: Sequence[str], required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]] | RowError]:
    """Each row of a file's text, in file order: (line, {column: stripped text}) with only
    the non-empty cells, every ``required`` column among them; or a RowError for a row
    that cannot be read (see the module docstring). A header error is the only item."""
    text = text.removeprefix("\ufeff")
    first = text.split("\n", 1)[0]
    delimiter = ";" if ";" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        yield RowError(1, "COLUMNS", "the file is empty: the first line must name the columns", "")
        return
    except csv.Error as error:
        yield RowError(1, "COLUMNS", f"the header is not CSV: {error}", first)
        return
    found, problem = _header(header, columns, required)
    if problem is not None:
        yield problem
        return
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            yield RowError(line, "FIELDS", f"the row is not CSV: {error}", "")
            line = reader.line_num + 1
            continue
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) > len(found):
            yield RowError(start, "FIELDS", f"{len(cells)} cells, the header names {len(found)}", delimiter.join(cells))
            continue
        named = {c: v.strip() for c, v in zip(found, cells) if v.strip()}
        empty = [c for c in required if c not in named]
        if empty:
            yield RowError(start, "INVALID", f"the {empty[0]} is empty", "")
            continue
        yield start, named
