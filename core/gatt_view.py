"""One decoded GATT record as a plain JSON-ready dict (what ``pmpgw gatt decode`` prints).

Values are canonical (mmHg, mmol/L, bpm, ms UTC); anything absent (NaN value, 0xFF aux or
user, no time) is None. The keys per kind are fixed by issue 3 item 6; the meaning of
``v``/``aux`` per kind is in include/pmp.h.
"""

from __future__ import annotations

import math

import numpy as np

from .codes import AUX_ABSENT, NO_USER, UNIT_NAMES, Flag, Kind, Unit


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _whole(x: float) -> int | None:
    return None if math.isnan(x) else int(x)


def _octet(x: int, absent: int = AUX_ABSENT) -> int | None:
    return None if x == absent else int(x)


def _time(record: np.void) -> int | None:
    return int(record["t"]) if record["flags"] & Flag.HAS_TIME else None


def _range(flags: int) -> str | None:
    if flags & Flag.RANGE_LO:
        return "LO"
    if flags & Flag.RANGE_HI:
        return "HI"
    return None


def _bp(r: np.void) -> dict:
    v = r["v"]
    return {
        "type": "bp",
        "sys": _num(v[0]),
        "dia": _num(v[1]),
        "map": _num(v[2]),
        "pul": _num(v[3]),
        "t": _time(r),
        "u_in": UNIT_NAMES[Unit(r["unit_in"])],
        "user": _octet(r["user"], NO_USER),
        "st": int(r["status"]),
    }


def _glu(r: np.void) -> dict:
    return {
        "type": "glu",
        "seq": int(r["seq"]),
        "t": _time(r),
        "glu": _num(r["v"][0]),
        "u_in": UNIT_NAMES[Unit(r["unit_in"])],
        "sample_type": _octet(r["aux"][0]),
        "location": _octet(r["aux"][1]),
        "sensor_status": int(r["status"]),
        "context_follows": bool(r["flags"] & Flag.CONTEXT_FOLLOWS),
        "range": _range(int(r["flags"])),
    }


def _glu_context(r: np.void) -> dict:
    v, aux = r["v"], r["aux"]
    return {
        "type": "glu_context",
        "seq": int(r["seq"]),
        "carbohydrate_id": _octet(aux[0]),
        "carbohydrate_kg": _num(v[0]),
        "meal": _octet(aux[1]),
        "tester": _octet(aux[2]),
        "health": _octet(aux[3]),
        "exercise_duration_s": _whole(v[3]),
        "exercise_intensity_pct": _octet(aux[4]),
        "medication_id": _octet(aux[5]),
        "medication": _num(v[1]),
        "medication_unit": UNIT_NAMES[Unit(r["unit_in"])],
        "hba1c_pct": _num(v[2]),
    }


def _cgm(r: np.void) -> dict:
    v = r["v"]
    return {
        "type": "cgm",
        "glu": _num(v[0]),
        "offset_min": _whole(v[3]),
        "t": _time(r),
        "trend": _num(v[1]),
        "quality": _num(v[2]),
        "range": _range(int(r["flags"])),
    }


VIEWS = {Kind.BP: _bp, Kind.GLU: _glu, Kind.GLU_CONTEXT: _glu_context, Kind.CGM: _cgm}


def record_to_dict(record: np.void) -> dict:
    """A decoded READING_DTYPE record (kind BP, GLU, GLU_CONTEXT or CGM) as a JSON-ready dict."""
    return VIEWS[Kind(record["kind"])](record)
