"""Patient records from text: the CSV file of ``pmpgw patients import`` and the options of
``pmpgw patients add``. Pure: text in, records and row errors out; no database.

What is checked here is what the text alone can say (columns, cell count, numbers, yes/no,
target plausibility, an id repeated in the file). What needs the registry (id already
registered, unknown staff, programme names, time zone, target names) is checked by
``Store.add_patients``, which reports by position in the list it was given: the caller maps
positions back to line numbers (``Row.line``).

CSV file
--------
The format of ``gateway.csv_rows`` (UTF-8, one header row, ``,`` or ``;``, quoting), one
patient per row. Columns, in any order (names are case-insensitive; only ``id`` is
required)::

    id, programmes, dispensary, tz, physician, nurse, personal_admin, bp_target,
    glucose_range, plan

An empty cell takes the default of ``pmpgw patients add``. Inside a cell, list items
(programmes, plan entries) are separated by ``|``: ``AH|DM2``, ``bp=1|glu=2``, because a
comma would need quoting and a semicolon may be the field separator.

Cell formats (the same as the ``patients add`` options):

- ``programmes``: AH, DM1, DM2, one or several (default AH);
- ``dispensary``: yes/no, y/n, true/false, 1/0 (default yes);
- ``tz``: an IANA zone (default Europe/Moscow);
- ``physician``, ``nurse``, ``personal_admin``: staff ids (registered with ``pmpgw staff add``);
- ``bp_target``: ``SYS/DIA`` in mmHg, the home BP target (``BP_HOME_HIGH`` fires at a 7-day
  mean at or above it), e.g. ``130/80``;
- ``glucose_range``: ``LOW-HIGH`` in mmol/L, the target range of time-in-range, e.g. ``3.9-10``;
- ``plan``: ``metric=days`` entries, how often each metric (bp, glu, cgm) is expected, e.g.
  ``bp=1|glu=3``.

Errors
------
Each bad row gives one ``csv_rows.RowError`` (its first problem): ``line`` (1-based, the
line the row starts on), ``reason``, ``message``, ``value`` (the offending text). Reasons:
``COLUMNS`` (header: no ``id`` column, an unknown or repeated column; line 1, and no row is
read), ``FIELDS`` (a row has more cells than the header, or is not CSV: a stray or
unclosed quote), ``INVALID`` (the id is empty, or a cell cannot be read), ``DUPLICATE``
(the id was already on an earlier line; the first one is kept).
"""

from __future__ import annotations

import dataclasses
import math

from . import csv_rows
from .csv_rows import RowError

COLUMNS = ("id", "programmes", "dispensary", "tz", "physician", "nurse", "personal_admin", "bp_target",
           "glucose_range", "plan")
CELL_SEPARATOR = "|"  # list items inside a CSV cell
OPTION_SEPARATOR = ","  # list items inside a ``patients add`` option
DEFAULT_PROGRAMMES = ("AH",)
DEFAULT_TZ = "Europe/Moscow"
FLAGS: dict[str, bool] = {"yes": True, "y": True, "true": True, "1": True,
                          "no": False, "n": False, "false": False, "0": False}
# Plausible individual targets: parameter (core.rule_tables.THRESHOLDS name) -> (lowest, highest).
# Pressure mmHg, glucose mmol/L.
TARGET_LIMITS: dict[str, tuple[float, float]] = {
    "home_sys": (100.0, 180.0),
    "home_dia": (60.0, 110.0),
    "tir_low": (2.5, 8.0),
    "tir_high": (6.0, 20.0),
}


class FieldError(ValueError):
    """A patient field's text cannot be read; ``value`` is the text, the message says what
    was expected."""

    def __init__(self, message: str, value: str) -> None:
        super().__init__(message)
        self.value = value


@dataclasses.dataclass(frozen=True)
class Row:
    """A readable row: its line and the patient, shaped for ``Store.add_patients``."""

    line: int
    patient: dict


@dataclasses.dataclass(frozen=True)
class Parsed:
    """The rows of a file that could be read, and one error per row that could not."""

    rows: list[Row]
    errors: list[RowError]


def _number(text: str, what: str, whole: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FieldError(f"{what} {text!r} is not a number", whole) from None
    if not math.isfinite(value):
        raise FieldError(f"{what} {text!r} is not a finite number", whole)
    return value


def _plain(value: float) -> int | float:
    """130.0 -> 130, 3.9 -> 3.9 (targets read as they were written)."""
    return int(value) if value.is_integer() else value


def _within_limits(targets: dict[str, int | float], whole: str) -> None:
    for name, value in targets.items():
        low, high = TARGET_LIMITS[name]
        if not low <= value <= high:
            raise FieldError(f"{name} {value} is outside the plausible {low:g}..{high:g}", whole)


def parse_programmes(text: str, separator: str) -> tuple[str, ...]:
    """``"AH|DM2"`` -> ("AH", "DM2") (names upper-cased; the store checks them)."""
    items = tuple([item.strip().upper() for item in text.split(separator)])
    if not all(items):
        raise FieldError(f"programmes {text!r} has an empty item (separate them with {separator!r})", text)
    return items


def parse_flag(text: str) -> bool:
    """yes/no, y/n, true/false, 1/0 (any case) -> bool."""
    try:
        return FLAGS[text.strip().lower()]
    except KeyError:
        raise FieldError(f"dispensary {text!r} is not one of {'/'.join(FLAGS)}", text) from None


def parse_bp_target(text: str) -> dict[str, int | float]:
    """``"130/80"`` (mmHg) -> {"home_sys": 130, "home_dia": 80}; systolic above diastolic,
    both within TARGET_LIMITS."""
    parts = text.split("/")
    if len(parts) != 2:
        raise FieldError(f"BP target {text!r} is not SYS/DIA (e.g. 130/80)", text)
    sys_, dia = (_plain(_number(p.strip(), "BP target", text)) for p in parts)
    if sys_ <= dia:
        raise FieldError(f"BP target {text!r}: systolic must be above diastolic", text)
    targets = {"home_sys": sys_, "home_dia": dia}
    _within_limits(targets, text)
    return targets


def parse_glucose_range(text: str) -> dict[str, int | float]:
    """``"3.9-10"`` (mmol/L) -> {"tir_low": 3.9, "tir_high": 10}; low below high, both
    within TARGET_LIMITS."""
    parts = text.split("-")
    if len(parts) != 2:
        raise FieldError(f"glucose range {text!r} is not LOW-HIGH in mmol/L (e.g. 3.9-10)", text)
    low, high = (_plain(_number(p.strip(), "glucose range", text)) for p in parts)
    if low >= high:
        raise FieldError(f"glucose range {text!r}: the low end must be below the high end", text)
    targets = {"tir_low": low, "tir_high": high}
    _within_limits(targets, text)
    return targets


def parse_plan(text: str, separator: str) -> dict[str, int | float]:
    """``"bp=1|glu=3"`` -> {"bp": 1, "glu": 3}: days between expected measurements of each
    metric (the store checks the metric names and that days are positive)."""
    plan: dict[str, int | float] = {}
    for item in text.split(separator):
        metric, equals, days = item.partition("=")
        metric = metric.strip().lower()
        if not equals or not metric:
            raise FieldError(f"plan {text!r} is not metric=days entries separated by {separator!r} "
                             "(e.g. bp=1)", text)
        if metric in plan:
            raise FieldError(f"plan {text!r} names {metric} twice", text)
        plan[metric] = _plain(_number(days.strip(), f"plan days of {metric}", text))
    return plan


def targets_of(bp_target: str | None, glucose_range: str | None, plan: str | None, separator: str) -> dict:
    """The targets JSON of ``Store.add_patient`` from the three target texts (None or empty =
    not set)."""
    targets: dict = {}
    if bp_target:
        targets.update(parse_bp_target(bp_target))
    if glucose_range:
        targets.update(parse_glucose_range(glucose_range))
    if plan:
        targets["plan"] = parse_plan(plan, separator)
    return targets


def _patient(cells: dict[str, str]) -> dict:
    """The patient, without its id, of one row's non-empty cells (column -> text)."""
    get = cells.get
    patient: dict = {
        "programmes": parse_programmes(cells["programmes"], CELL_SEPARATOR) if "programmes" in cells
        else DEFAULT_PROGRAMMES,
        "dispensary": parse_flag(cells["dispensary"]) if "dispensary" in cells else True,
        "tz": get("tz", DEFAULT_TZ),
        "physician": get("physician"), "nurse": get("nurse"), "personal_admin": get("personal_admin"),
    }
    patient["targets"] = targets_of(get("bp_target"), get("glucose_range"), get("plan"), CELL_SEPARATOR)
    return patient


def parse(text: str) -> Parsed:
    """The patients of a CSV file's text (see the module docstring); rows in file order."""
    rows: list[Row] = []
    errors: list[RowError] = []
    first_line: dict[str, int] = {}
    read: dict[tuple, dict | FieldError] = {}
    for item in csv_rows.read(text, COLUMNS, ("id",)):
        if isinstance(item, RowError):
            errors.append(item)
            continue
        start, named = item
        patient_id = named.pop("id")
        if patient_id in first_line:
            errors.append(RowError(start, "DUPLICATE", f"patient {patient_id!r} is already on line "
                                                       f"{first_line[patient_id]}", patient_id))
            continue
        first_line[patient_id] = start
        # Files repeat the same cells (programmes, staff, targets) over many rows: each
        # distinct set of cells is read once; its patients share the nested plan dict.
        key = tuple(named.items())
        if key not in read:
            try:
                read[key] = _patient(named)
            except FieldError as error:
                read[key] = error
        patient = read[key]
        if isinstance(patient, FieldError):
            errors.append(RowError(start, "INVALID", str(patient), patient.value))
        else:
            rows.append(Row(start, {**patient, "id": patient_id, "targets": dict(patient["targets"])}))
    return Parsed(rows, errors)
