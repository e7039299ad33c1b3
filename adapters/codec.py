"""Reading maps (``pmp/v1/dev/{device_id}/m``, DESIGN.md "Reading map") -> row tuples.

One parsed element (a map as a tuple of key/value pairs, see ``adapters.wire``) becomes one
``Row`` in canonical units, or raises ``Rejected`` (SCHEMA) naming the key and the value.
The tables below are the whole schema; nothing outside them is accepted:

    READING_TYPES   per ``type``: its kind, every key it allows, the keys it needs, its units
    INTEGER_KEYS    integer keys and their inclusive ranges (a bool is never an integer)
    MEALS           ``meal`` -> meal code (the 0x2A34 Meal field's values; 0 = absent)
    SOURCES         ``src`` -> (0x2A18 sample type, flags)
    CENSORED        ``"glu": "LO" / "HI"`` -> flag (value absent, stored as censored)

Numbers (``sys dia map pul glu trend bat``) are int or float, never bool; units are
converted here, once, with the constants and the operation order of core/gatt.c, so a
reading gives bit-identical values over BLE or as a reading map: mmHg = kPa * 7.50062,
mmol/L = mg/dL / 18.016 (also for ``trend``, in the glucose unit per minute).

Validation of values is the core's job (ranges, NaN / infinity in needed values, time):
a NaN or infinity in ``sys``, ``dia`` or ``glu`` is passed on as it is and the core makes it
NOTNUM. A NaN in an optional value (``map``, ``pul``, ``trend``) would read as "absent"
downstream, so such a row gets reason NOTNUM here (its values kept); so does a battery that
is not finite (the core never sees ``bat``).

Flags: HAS_TIME always (``t`` is required); HAS_SEQ when ``seq`` is given; RANGE_LO /
RANGE_HI for censored glucose; CONTROL for ``"src": "control"``; ARTIFACT when ``st`` has
a 0x2A35 artifact bit (body movement 0x01, cuff loose 0x02, improper position 0x20).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, NoReturn

from core.codes import AUX_ABSENT, NO_USER, Flag, Kind, Reason, Unit

from .wire import Rejected, map_of

KPA_TO_MMHG = 7.50062  # core/gatt.c KPA_TO_MMHG
MG_PER_DL_PER_MMOL_PER_L = 18.016  # core/gatt.c MGDL_PER_MMOLL
ARTIFACT_STATUS_BITS = 0x0023  # 0x2A35 status: body movement, cuff too loose, improper position


class ReadingType(NamedTuple):
    """The schema of one ``type`` of reading map. Required keys (``needs``) are ``t``,
    ``type`` and the needed values: ``sys`` and ``dia`` for bp, ``glu`` for glu and cgm."""

    kind: int  # Kind
    keys: frozenset[str]  # every key allowed
    needs: frozenset[str]  # the keys it requires (a subset of ``keys``)
    units: dict[str, int]  # ``u`` -> Unit the values arrive in
    default_unit: int  # Unit when ``u`` is absent


_COMMON_KEYS = frozenset({"seq", "t", "type", "u", "st", "user", "bat"})
_PRESSURE_UNITS = {"mmHg": int(Unit.MMHG), "kPa": int(Unit.KPA)}
_GLUCOSE_UNITS = {"mmol/L": int(Unit.MMOL_PER_L), "mg/dL": int(Unit.MG_PER_DL)}

_NEEDED_KEYS = frozenset({"t", "type"})

READING_TYPES: dict[str, ReadingType] = {
    "bp": ReadingType(int(Kind.BP), _COMMON_KEYS | {"sys", "dia", "map", "pul"}, _NEEDED_KEYS | {"sys", "dia"},
                      _PRESSURE_UNITS, int(Unit.MMHG)),
    "glu": ReadingType(int(Kind.GLU), _COMMON_KEYS | {"glu", "meal", "src"}, _NEEDED_KEYS | {"glu"}, _GLUCOSE_UNITS,
                       int(Unit.MMOL_PER_L)),
    "cgm": ReadingType(int(Kind.CGM), _COMMON_KEYS | {"glu", "trend"}, _NEEDED_KEYS | {"glu"}, _GLUCOSE_UNITS,
                       int(Unit.MMOL_PER_L)),
}

INTEGER_KEYS: dict[str, tuple[int, int]] = {
    "seq": (0, 2**32 - 1),
    "t": (-(2**63), 2**63 - 1),
    "st": (0, 0xFFFF),
    "user": (0, 0xFF),
}

MEALS: dict[str, int] = {"pre": 1, "post": 2, "fasting": 3, "casual": 4, "bedtime": 5}
MEAL_ABSENT = 0

SOURCES: dict[str, tuple[int, int]] = {
    "capillary": (1, 0),
    "venous": (3, 0),
    "control": (10, int(Flag.CONTROL)),
}
DEFAULT_SOURCE = "capillary"

CENSORED: dict[str, int] = {"LO": int(Flag.RANGE_LO), "HI": int(Flag.RANGE_HI)}

# The fields of a row tuple, in order: READING_DTYPE columns in canonical units (aux0 is
# aux[0], the glucose sample type, AUX_ABSENT otherwise), then two side columns: battery
# percent (NaN = absent) and meal (MEALS code, 0 = absent). A plain tuple: a NamedTuple
# would cost more than all the checks of a reading.
ROW_FIELDS = ("t", "v0", "v1", "v2", "v3", "seq", "status", "flags", "kind", "reason", "unit_in", "user", "aux0",
              "battery", "meal")
Row = tuple

_ABSENT: Any = object()
_NAN = math.nan
_OK, _NOTNUM = int(Reason.OK), int(Reason.NOTNUM)
_HAS_TIME, _HAS_SEQ, _ARTIFACT = int(Flag.HAS_TIME), int(Flag.HAS_SEQ), int(Flag.ARTIFACT)
_BP, _CGM = int(Kind.BP), int(Kind.CGM)
_KPA, _MG_PER_DL = int(Unit.KPA), int(Unit.MG_PER_DL)
_SEQ_MAX, _ST_MAX, _USER_MAX = INTEGER_KEYS["seq"][1], INTEGER_KEYS["st"][1], INTEGER_KEYS["user"][1]
_T_MIN, _T_MAX = INTEGER_KEYS["t"]
_DEFAULT_SAMPLE_TYPE = SOURCES[DEFAULT_SOURCE][0]


def reading_row(element: Any) -> Row:
    """The row (ROW_FIELDS) of one reading-map element; raises ``Rejected`` (SCHEMA) naming
    the key and the offending value."""
    try:
        return _row(element)
    except KeyError as missing:  # a required key (only those are read with m[key])
        raise Rejected(Reason.SCHEMA, "missing key", missing.args[0]) from None
    except OverflowError:  # float() of a JSON integer of hundreds of digits
        raise Rejected(Reason.SCHEMA, "number too large for a float", None) from None


def _row(element: Any) -> Row:
    # The hot path of the adapters: exact type checks (``type(x) is float``), a plain tuple.
    m = map_of(element, "reading")
    name = m["type"]
    spec = READING_TYPES.get(name) if type(name) is str else None
    if spec is None:
        raise Rejected(Reason.SCHEMA, f"type must be one of {sorted(READING_TYPES)}", name)
    kind, allowed, _, units, default_unit = spec
    if not allowed.issuperset(m):
        raise Rejected(Reason.SCHEMA, f"unknown key for type {name}", _any(m.keys() - allowed))
    keys = m.keys()
    t = m["t"]
    if type(t) is not int or not _T_MIN <= t <= _T_MAX:
        _bad_integer("t", t)
    flags = _HAS_TIME
    reason = _OK
    seq = m.get("seq", _ABSENT)
    if seq is _ABSENT:
        seq = 0
    elif type(seq) is not int or not 0 <= seq <= _SEQ_MAX:
        _bad_integer("seq", seq)
    else:
        flags = _HAS_TIME | _HAS_SEQ
    status = m.get("st", 0)
    if type(status) is not int or not 0 <= status <= _ST_MAX:
        _bad_integer("st", status)
    if status & ARTIFACT_STATUS_BITS:
        flags |= _ARTIFACT
    user = m.get("user", NO_USER)
    if type(user) is not int or not 0 <= user <= _USER_MAX:
        _bad_integer("user", user)
    u = m.get("u", _ABSENT)
    if u is _ABSENT:
        unit = default_unit
    else:
        unit = units.get(u) if type(u) is str else None
        if unit is None:
            raise Rejected(Reason.SCHEMA, f"u must be one of {sorted(units)} for type {name}", u)
    battery = _number("bat", m.get("bat", _NAN))
    if battery - battery != 0.0 and "bat" in keys:  # NaN or infinity
        reason = _NOTNUM
    if kind == _BP:
        v0, v1 = _number("sys", m["sys"]), _number("dia", m["dia"])
        v2, v3 = _number("map", m.get("map", _NAN)), _number("pul", m.get("pul", _NAN))
        if (v2 != v2 and "map" in keys) or (v3 != v3 and "pul" in keys):  # an explicit NaN, not absence
            reason = _NOTNUM
        if unit == _KPA:
            v0, v1, v2 = v0 * KPA_TO_MMHG, v1 * KPA_TO_MMHG, v2 * KPA_TO_MMHG
        return (t, v0, v1, v2, v3, seq, status, flags, kind, reason, unit, user, AUX_ABSENT, battery, MEAL_ABSENT)
    v0 = m["glu"]
    if type(v0) is str:
        censored = CENSORED.get(v0)
        if censored is None:
            raise Rejected(Reason.SCHEMA, f"glu must be a number or one of {sorted(CENSORED)}", v0)
        flags |= censored
        v0 = _NAN
    else:
        v0 = _number("glu", v0)
        if unit == _MG_PER_DL:
            v0 = v0 / MG_PER_DL_PER_MMOL_PER_L
    if kind == _CGM:
        v1 = _number("trend", m.get("trend", _NAN))
        if v1 != v1 and "trend" in keys:
            reason = _NOTNUM
        if unit == _MG_PER_DL:
            v1 = v1 / MG_PER_DL_PER_MMOL_PER_L
        return (t, v0, v1, _NAN, _NAN, seq, status, flags, kind, reason, unit, user, AUX_ABSENT, battery, MEAL_ABSENT)
    meal = m.get("meal", _ABSENT)
    if meal is _ABSENT:
        meal = MEAL_ABSENT
    else:
        meal = MEALS.get(meal) if type(meal) is str else None
        if meal is None:
            raise Rejected(Reason.SCHEMA, f"meal must be one of {sorted(MEALS)}", m["meal"])
    sample_type = _DEFAULT_SAMPLE_TYPE
    source = m.get("src", _ABSENT)
    if source is not _ABSENT:
        found = SOURCES.get(source) if type(source) is str else None
        if found is None:
            raise Rejected(Reason.SCHEMA, f"src must be one of {sorted(SOURCES)}", source)
        sample_type, source_flags = found
        flags |= source_flags
    return (t, v0, _NAN, _NAN, _NAN, seq, status, flags, kind, reason, unit, user, sample_type, battery, meal)


def kind_of(element: Any) -> Kind:
    """The kind an element's ``type`` names, NONE when it names none (for rejected rows)."""
    if type(element) is not tuple:
        return Kind.NONE
    for key, value in element:
        if key == "type" and type(value) is str and value in READING_TYPES:
            return READING_TYPES[value].kind
    return Kind.NONE


def _number(key: str, x: Any) -> float:
    """``x`` as a float: an int converts, a float passes (NaN and infinities too: validation
    judges those), anything else (bool, str, None, ...) is SCHEMA naming ``key``."""
    if type(x) is float:
        return x
    if type(x) is int:
        return float(x)
    raise Rejected(Reason.SCHEMA, f"{key} must be a number", x)


def _bad_integer(key: str, x: Any) -> NoReturn:
    low, high = INTEGER_KEYS[key]
    raise Rejected(Reason.SCHEMA, f"{key} must be an integer in [{low}, {high}]", x)


def _any(keys: Any) -> Any:
    """One of a set of keys, chosen reproducibly (for the detail text)."""
    return min(keys, key=repr)
