"""Reading maps -> columns, a group of maps at a time: the fast path of ``adapters.codec``.

``Columns`` decodes the reading maps of one batch. ``add`` takes the parsed elements of a
message (maps arrive as tuples of key/value pairs, ``adapters.wire``); about every CHUNK
elements it groups the maps that share one key sequence (same keys, same order) and one
``type``. Per group the keys are checked once against ``codec.READING_TYPES``; each value
column is then checked in bulk (exact Python types: a bool is never a number; integer
ranges of ``codec.INTEGER_KEYS``; names of the units, ``codec.MEALS`` and
``codec.SOURCES``) and converted to numpy. ``blocks`` then gives the rows of the batch in
canonical units, a block per ``type`` and set of keys.

Whatever is doubtful is *left*: ``add`` and ``flush`` return those elements, and the caller
decodes them one by one with ``codec.reading_row``, which gives every rejection its reason
and detail. A map is left alone for a value of the wrong type, an integer out of range, an
unknown name or a censored ``"LO"`` / ``"HI"`` glucose; a whole group for an unknown,
repeated or missing key, an unknown ``type`` or an int too large for a float; so is an
element that is not a map, and a group of fewer than MIN_GROUP maps (below that, numpy's
cost per call outweighs the per-map cost).

Invariant (tested against ``reading_row`` in tests/adapters/test_columnar.py): a row decoded
here is bit for bit the row ``reading_row`` gives for its element: values as the float64 of
the ints and floats sent (NaN and infinities passed on), mmHg = kPa * KPA_TO_MMHG and mmol/L
= mg/dL / MG_PER_DL_PER_MMOL_PER_L (also ``trend``) as the same IEEE operations, NOTNUM for
an explicit NaN in ``map``, ``pul`` or ``trend`` or a battery that is not finite.

Cost: a few C-level passes over the elements, their pairs and their values (``zip``,
``map`` with itemgetter and ``type``, ``np.fromiter``); no Python code runs per map. Each
pass touches every object, so the elements should still be in the CPU cache: hence chunks
of about CHUNK elements, just parsed (a batch of 25,000 maps is some 14 MB of objects).
What is left for ``blocks`` is numpy on whole columns, once per batch. When a chunk leaves
most of its maps (keys in many orders, most values doubtful), ``passes`` tells the caller
to decode the next PASS elements itself, at once, as it would without this module.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Hashable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from core.codes import AUX_ABSENT, NO_USER, Flag, Kind, Reason, Unit

from .codec import (ARTIFACT_STATUS_BITS, DEFAULT_SOURCE, INTEGER_KEYS, KPA_TO_MMHG, MEAL_ABSENT, MEALS,
                    MG_PER_DL_PER_MMOL_PER_L, READING_TYPES, SOURCES)

MIN_GROUP = 16  # smallest group decoded here, maps; smaller ones are left to reading_row
CHUNK = 2048  # elements checked at a time: some 1.1 MB of objects, about an L2 cache
PASS = 4 * CHUNK  # elements left unchecked after a chunk that left most of its own

_NAN = float("nan")
_OK, _NOTNUM = int(Reason.OK), int(Reason.NOTNUM)
_HAS_TIME, _HAS_SEQ, _ARTIFACT = int(Flag.HAS_TIME), int(Flag.HAS_SEQ), int(Flag.ARTIFACT)
_BP, _CGM = int(Kind.BP), int(Kind.CGM)
_KPA, _MG_PER_DL = int(Unit.KPA), int(Unit.MG_PER_DL)
_EXACT = 2**53  # every int64 within +-2**53 is a float64 exactly
_KEY, _VALUE = operator.itemgetter(0), operator.itemgetter(1)
_INT, _NUMBER = frozenset({int}), frozenset({int, float})
_SOURCE_INDEX = {name: i for i, name in enumerate(SOURCES)}  # src -> index into the two arrays below
_SAMPLE_TYPE_OF = np.array([sample_type for sample_type, _ in SOURCES.values()])
_SOURCE_FLAGS_OF = np.array([flags for _, flags in SOURCES.values()])
_NAMED_KEYS = frozenset({"type", "u", "meal", "src"})
# every other key a type allows holds a number (int or float)
_NUMBER_KEYS = frozenset().union(*(spec.keys for spec in READING_TYPES.values())) - _NAMED_KEYS - INTEGER_KEYS.keys()

_Group = tuple[list[np.ndarray], dict[str, list[np.ndarray]]]


class Block(NamedTuple):
    """Rows decoded together. ``rows``: their row numbers (``Columns.add``);
    ``columns``: one per ``codec.ROW_FIELDS``, in that order, each an array of len(rows)
    values or one value for all rows (numpy broadcasts it)."""

    rows: np.ndarray
    columns: tuple


class _Doubt(Exception):
    """No map of a group is decoded here; all go to reading_row."""


class Columns:
    """The reading maps of one batch, checked and converted a chunk at a time (module docstring)."""

    def __init__(self) -> None:
        # (type, its keys sorted) -> row numbers, and per key but type the checked values; an array a chunk
        self._groups: dict[tuple[str, tuple[str, ...]], _Group] = {}
        self._pending: list = []  # elements not checked yet, of messages whose ...
        self._first_rows: list[int] = []  # ... first rows and ...
        self._counts: list[int] = []  # ... numbers of elements these are
        self._passing = 0  # elements still to leave unchecked, after a chunk that left most of its own

    def passes(self, n: int) -> bool:
        """Whether the caller is to decode the next ``n`` elements itself, one by one with
        ``codec.reading_row``, rather than ``add`` them: yes for PASS elements after a chunk
        that left most of its maps (counted down here)."""
        if self._passing <= 0:
            return False
        self._passing -= n
        return True

    def add(self, elements: list, first_row: int) -> list[tuple[int, Any]]:
        """Take the elements of one message (as ``wire.parse`` gives them), rows ``first_row``
        on; check the elements taken so far once they are CHUNK or more. Returns ``(row,
        element)`` for each element left to ``codec.reading_row`` by that check, by row."""
        self._pending += elements
        self._first_rows.append(first_row)
        self._counts.append(len(elements))
        return self.flush() if len(self._pending) >= CHUNK else []

    def flush(self) -> list[tuple[int, Any]]:
        """Check the elements taken and not checked yet; returns those left, as ``add``."""
        pending, counts = self._pending, self._counts
        if not pending:
            return []
        starts = np.cumsum(counts) - counts
        rows = np.arange(len(pending)) + np.repeat(np.array(self._first_rows) - starts, counts)
        left = self._check(pending, rows)
        if 2 * len(left) > len(pending):
            self._passing = PASS
        self._pending, self._first_rows, self._counts = [], [], []
        return list(zip(rows[left].tolist(), _pick(pending, left)))

    def blocks(self) -> list[Block]:
        """The rows of the maps checked so far, a block per type and set of keys."""
        return [Block(np.concatenate(rows), _row_fields(name, {key: np.concatenate(chunks)
                                                              for key, chunks in checked.items()}))
                for (name, _), (rows, checked) in self._groups.items()]

    def _check(self, elements: list, rows: np.ndarray) -> list[int]:
        """Check and convert the maps among ``elements``, ``rows[i]`` the row of
        ``elements[i]``; returns the indexes of the elements left, ascending."""
        left: list[np.ndarray] = []
        for at, column in _groups(elements, left):
            try:
                name, checked, doubtful = _checked(column)
            except _Doubt:
                left.append(at)
                continue
            if doubtful is not None:
                left.append(at[doubtful])
                at = at[~doubtful]
            group = (name, tuple(sorted(checked)))
            if group not in self._groups:
                self._groups[group] = ([], {key: [] for key in checked})
            group_rows, group_values = self._groups[group]
            group_rows.append(rows[at])
            for key, values in checked.items():
                group_values[key].append(values)
        return np.sort(np.concatenate(left)).tolist() if left else []


def _groups(elements: Sequence[Any], left: list[np.ndarray]) -> Iterator[tuple[np.ndarray, dict[str, list]]]:
    """``(at, column)`` for each group of MIN_GROUP or more maps with one key sequence and
    one ``type`` value: ``at`` their indexes in ``elements``, ``column`` each key's values,
    map after map. Appends to ``left`` the indexes of the other elements: in smaller groups,
    not maps, with a repeated key, no ``type`` or an unhashable one."""
    n = len(elements)
    if not n:
        return
    types = list(map(type, elements))
    if types.count(tuple) == n:
        lengths = np.fromiter(map(len, elements), np.intp, n)
    else:  # not a map: length 0, as the empty map (which has no type)
        lengths = np.array([len(e) if t is tuple else 0 for e, t in zip(elements, types)], dtype=np.intp)
    for at in _split(lengths, np.arange(n), left):
        if not lengths[at[0]]:
            left.append(at)
        else:
            yield from _by_keys(elements if len(at) == n else _pick(elements, at.tolist()), at, left)


def _by_keys(maps: Sequence[tuple], at: np.ndarray, left: list[np.ndarray]) -> Iterator[tuple[np.ndarray, dict]]:
    """``_groups`` for ``maps``, the elements ``at``, all of one length."""
    pairs = list(zip(*maps))  # pairs[j]: the j-th (key, value) of every map
    keys = [list(map(_KEY, same_place)) for same_place in pairs]
    if any(place.count(place[0]) != len(at) for place in keys):
        for same_keys in _split(_labels(list(zip(*keys))), at, left):
            yield from _by_keys(_pick(maps, same_keys.tolist()), at[same_keys], left)
        return
    column = {place[0]: list(map(_VALUE, same_place)) for place, same_place in zip(keys, pairs)}
    if len(column) != len(keys) or "type" not in column:
        left.append(at)  # a repeated key; no type
        return
    names = column["type"]
    if names.count(names[0]) == len(names):
        yield at, column
        return
    try:
        labels = _labels(names)
    except TypeError:  # an unhashable type value
        left.append(at)
        return
    for same_type in _split(labels, at, left):
        part = same_type.tolist()
        yield at[same_type], {key: _pick(values, part) for key, values in column.items()}


def _checked(column: dict[str, list]) -> tuple[str, dict[str, np.ndarray], np.ndarray | None]:
    """The ``type`` of a group of maps with the keys and values of ``column``; for each
    other key its values checked as ``reading_row`` checks them: ints (INTEGER_KEYS ranges)
    as int64, numbers as float64, names as their codes (``u``: the Unit; ``meal``: MEALS;
    ``src``: _SOURCE_INDEX); and where a map holds a value it does not accept as it is
    (None: nowhere), whose values are left out. Raises ``_Doubt`` when no map is accepted."""
    name = column["type"][0]
    spec = READING_TYPES.get(name) if type(name) is str else None
    if spec is None or not spec.keys >= column.keys() >= spec.needs:
        raise _Doubt
    tables = {"u": spec.units, "meal": MEALS, "src": _SOURCE_INDEX}
    checked = {}
    doubtful = None
    for key, values in column.items():
        if key in INTEGER_KEYS:
            checked[key], wrong = _integers(values, *INTEGER_KEYS[key])
        elif key in _NUMBER_KEYS:
            checked[key], wrong = _numbers(values)
        elif key != "type":
            checked[key], wrong = _codes(values, tables[key])
        else:
            continue
        if wrong is not None:
            doubtful = wrong if doubtful is None else doubtful | wrong
    if doubtful is not None:
        if doubtful.all():
            raise _Doubt
        accepted = ~doubtful
        checked = {key: values[accepted] for key, values in checked.items()}
    return name, checked, doubtful


# as in Python, which does not warn: kPa * 7.50062 may overflow to inf; a signalling NaN
# (msgpack keeps its bits) comes out quiet
@np.errstate(over="ignore", invalid="ignore")
def _row_fields(name: str, checked: dict[str, np.ndarray]) -> tuple:
    """The columns (``codec.ROW_FIELDS``) of maps of type ``name`` from their ``checked`` values."""
    kind, _, _, _, default_unit = READING_TYPES[name]
    t = checked["t"]
    seq, status, user = checked.get("seq", 0), checked.get("st", 0), checked.get("user", NO_USER)
    unit = checked.get("u", default_unit)
    battery = checked.get("bat", _NAN)
    flags = (_HAS_TIME | _HAS_SEQ if "seq" in checked else _HAS_TIME) | np.where(status & ARTIFACT_STATUS_BITS,
                                                                                     _ARTIFACT, 0)
    notnum = ~np.isfinite(battery) if "bat" in checked else np.zeros(len(t), bool)
    aux0, meal = AUX_ABSENT, MEAL_ABSENT
    if kind == _BP:
        v0, v1, v2, v3 = (checked.get(key, _NAN) for key in ("sys", "dia", "map", "pul"))
        notnum |= _explicit_nan(checked, "map") | _explicit_nan(checked, "pul")
        kpa = unit == _KPA
        v0, v1, v2 = (np.where(kpa, v * KPA_TO_MMHG, v) for v in (v0, v1, v2))
    else:
        v0, v1, v2, v3 = checked["glu"], checked.get("trend", _NAN), _NAN, _NAN
        mg_per_dl = unit == _MG_PER_DL
        v0 = np.where(mg_per_dl, v0 / MG_PER_DL_PER_MMOL_PER_L, v0)
        if kind == _CGM:
            notnum |= _explicit_nan(checked, "trend")
            v1 = np.where(mg_per_dl, v1 / MG_PER_DL_PER_MMOL_PER_L, v1)
        else:
            meal = checked.get("meal", MEAL_ABSENT)
            source = checked.get("src")
            if source is None:
                aux0 = SOURCES[DEFAULT_SOURCE][0]
            else:
                aux0, flags = _SAMPLE_TYPE_OF[source], flags | _SOURCE_FLAGS_OF[source]
    reason = np.where(notnum, _NOTNUM, _OK)
    return t, v0, v1, v2, v3, seq, status, flags, kind, reason, unit, user, aux0, battery, meal


def _integers(values: list, low: int, high: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``values`` as int64, and where one is not an int in [low, high] (None: nowhere)."""
    array, wrong = _converted(values, list(map(type, values)), _INT, np.int64)
    out_of_range = (array < low) | (array > high)
    if out_of_range.any():
        wrong = out_of_range if wrong is None else wrong | out_of_range
    return array, wrong


def _numbers(values: list) -> tuple[np.ndarray, np.ndarray | None]:
    """``values`` as float64, and where one is not an int or a float (None: nowhere). An int
    converts as ``float(x)`` does: through int64 when all are ints within 2**53 (exact),
    else by numpy's conversion of each value, which calls ``float``."""
    types = list(map(type, values))
    if types.count(int) == len(values):
        try:
            array = np.fromiter(values, np.int64, len(values))
        except OverflowError:  # beyond int64: as floats
            array = None
        if array is not None and -_EXACT <= array.min() and array.max() <= _EXACT:
            return array.astype(np.float64), None
    return _converted(values, types, _NUMBER, np.float64)


def _converted(values: list, types: list[type], accepted: frozenset[type], dtype: type
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``values`` whose type (in ``types``) is ``accepted`` as ``dtype`` (0 for the
    others), and where they are others (None: nowhere). Raises ``_Doubt`` for an int that
    ``dtype`` cannot hold."""
    n = len(values)
    if sum(map(types.count, accepted)) == n:
        wrong, kept = None, values
    else:
        wrong = ~np.fromiter(map(accepted.__contains__, types), bool, n)
        kept = _pick(values, np.flatnonzero(~wrong).tolist())
    try:
        converted = np.fromiter(kept, dtype, len(kept))
    except OverflowError:
        raise _Doubt from None
    if wrong is None:
        return converted, None
    array = np.zeros(n, dtype)
    array[~wrong] = converted
    return array, wrong


def _codes(values: list, table: dict[str, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """``table[value]`` for each of ``values`` (-1 where none: only a str equals a str key),
    and where one is not a name in ``table`` (None: nowhere)."""
    first = values[0]
    if values.count(first) == len(values) and type(first) is str and first in table:  # == compares, no hash
        return np.full(len(values), table[first]), None
    codes = np.array([table.get(value, -1) if type(value) is str else -1 for value in values])
    wrong = codes < 0
    return codes, wrong if wrong.any() else None


def _explicit_nan(checked: dict[str, np.ndarray], key: str) -> np.ndarray | bool:
    """Where an optional value was sent as NaN (absence is no NaN)."""
    return np.isnan(checked[key]) if key in checked else False


def _pick(values: Sequence[Any], indexes: list[int]) -> list:
    return list(map(values.__getitem__, indexes))


def _labels(values: list[Hashable]) -> np.ndarray:
    """A label per value: the index of the first value equal to it (TypeError if one is unhashable)."""
    first: dict = {}
    return np.fromiter(map(first.setdefault, values, itertools.count()), np.intp, len(values))


def _split(labels: np.ndarray, at: np.ndarray, left: list[np.ndarray]) -> list[np.ndarray]:
    """The positions of each label (an int >= 0) that MIN_GROUP or more of ``labels`` have,
    ascending; ``at`` of the other positions go to ``left``."""
    if (labels == labels[0]).all():
        if len(labels) >= MIN_GROUP:
            return [np.arange(len(labels))]
        left.append(at)
        return []
    common = np.bincount(labels)[labels] >= MIN_GROUP
    left.append(at[~common])
    kept = np.flatnonzero(common)
    order = kept[np.argsort(labels[kept], kind="stable")]
    ordered = labels[order]
    return np.split(order, np.flatnonzero(ordered[1:] != ordered[:-1]) + 1) if len(order) else []
