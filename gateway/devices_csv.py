"""Device records from text: the CSV file of ``pmpgw devices import``. Pure: text in,
records and row errors out; no database.

What is checked here is what the text alone can say (columns, cell count, times, user
slot, a device repeated in the file). What needs the registry (id and kind rules, device
already registered or retired, patient registered, the interval, overlapping bindings in
the file or in the store) is checked by ``Store.add_devices``, which reports by position
in the list it was given: the caller maps positions back to line numbers (``Row.line``).

CSV file
--------
The format of ``gateway.csv_rows`` (UTF-8, one header row, ``,`` or ``;``, quoting), one
device per row. Columns, in any order (names are case-insensitive; ``id`` and ``kind``
are required columns and cells)::

    id, kind, patient, from, to, user

- ``id``: the device id, or a BLE meter's address in upper case with colons
  (``AA:BB:CC:DD:EE:FF``), as ``pmpgw devices add``;
- ``kind``: bp, glu, cgm or hub (any case);
- ``patient``: a registered patient (``pmpgw patients import`` first) to bind the device
  to, as ``pmpgw bind``; empty: the device is only registered;
- ``from``: start of the binding, ISO 8601 (UTC unless it names an offset) or ms UTC;
  empty: the beginning of time (``pmpgw bind``'s default);
- ``to``: end of the binding, exclusive, ISO 8601 or ms UTC; empty: open end;
- ``user``: the user slot of a shared meter (a whole number); empty: any slot.

A device is on several rows only to be bound several times (user slots of a shared
meter, or one patient after another): each of its rows names a patient and the same kind;
the first registers it.

Errors
------
Each bad row gives one ``csv_rows.RowError`` (its first problem): ``line`` (1-based, the
line the row starts on), ``reason``, ``message``, ``value`` (the offending text). Reasons:
``COLUMNS`` (header: no ``id`` or ``kind`` column, an unknown or repeated column; line 1,
and no row is read), ``FIELDS`` (a row has more cells than the header, or is not CSV),
``INVALID`` (the id or kind is empty, a time or user slot cannot be read, ``from``, ``to``
or ``user`` without a patient), ``DUPLICATE`` (the device is on an earlier line and this
row does not add a binding of the same kind; the first one is kept).
"""

from __future__ import annotations

import argparse
import dataclasses

from . import csv_rows
from .cli_common import parse_time_ms
from .csv_rows import RowError

COLUMNS = ("id", "kind", "patient", "from", "to", "user")
REQUIRED = ("id", "kind")
BEGINNING_MS = 0  # a binding without ``from`` holds from the beginning of time (``pmpgw bind``)


class CellError(ValueError):
    """A cell's text cannot be read; ``value`` is the text."""

    def __init__(self, message: str, value: str) -> None:
        super().__init__(message)
        self.value = value


@dataclasses.dataclass(frozen=True)
class Row:
    """A readable row: its line and the device, shaped for ``Store.add_devices``: id, kind
    and, when it is bound, patient, from (ms UTC), to (ms UTC, exclusive, None = open),
    user (slot, None = any)."""

    line: int
    device: dict


@dataclasses.dataclass(frozen=True)
class Parsed:
    """The rows of a file that could be read, and one error per row that could not."""

    rows: list[Row]
    errors: list[RowError]


def _time_ms(cells: dict[str, str], column: str, default: int | None) -> int | None:
    if column not in cells:
        return default
    try:
        return parse_time_ms(cells[column])
    except argparse.ArgumentTypeError as error:
        raise CellError(f"{column} {error}", cells[column]) from None


def _device(cells: dict[str, str]) -> dict:
    """The device of one row's non-empty cells (column -> text)."""
    device = {"id": cells["id"], "kind": cells["kind"].lower()}
    if "patient" not in cells:
        stray = next((c for c in ("from", "to", "user") if c in cells), None)
        if stray is not None:
            raise CellError(f"{stray} {cells[stray]!r} without a patient: from, to and user are the binding's",
                            cells[stray])
        return device
    user = cells.get("user")
    if user is not None and not user.isdigit():
        raise CellError(f"user slot {user!r} is not a whole number", user)
    return {**device, "patient": cells["patient"], "from": _time_ms(cells, "from", BEGINNING_MS),
            "to": _time_ms(cells, "to", None), "user": None if user is None else int(user)}


def _repeat(cells: dict[str, str], first: tuple[int, str, bool]) -> str | None:
    """Why a row naming a device already on line ``first[0]`` (kind, bound) cannot add a
    binding to it; None if it can."""
    line, kind, bound = first
    if not bound or "patient" not in cells:
        return (f"device {cells['id']!r} is already on line {line}: a device is on several lines only to be "
                "bound several times, each line with a patient")
    if cells["kind"].lower() != kind:
        return f"device {cells['id']!r} is already on line {line} as kind {kind}"
    return None


def parse(text: str) -> Parsed:
    """The devices of a CSV file's text (see the module docstring); rows in file order."""
    rows: list[Row] = []
    errors: list[RowError] = []
    first: dict[str, tuple[int, str, bool]] = {}  # device id -> (line, kind, bound) of its first row
    for item in csv_rows.read(text, COLUMNS, REQUIRED):
        if isinstance(item, RowError):
            errors.append(item)
            continue
        line, cells = item
        device_id = cells["id"]
        if device_id in first:
            problem = _repeat(cells, first[device_id])
            if problem is not None:
                errors.append(RowError(line, "DUPLICATE", problem, device_id))
                continue
        else:
            first[device_id] = (line, cells["kind"].lower(), "patient" in cells)
        try:
            rows.append(Row(line, _device(cells)))
        except CellError as error:
            errors.append(RowError(line, "INVALID", str(error), error.value))
    return Parsed(rows, errors)
