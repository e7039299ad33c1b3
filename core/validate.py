"""Validation kernel: plausible ranges, non-numbers and measurement-time checks.

The rules are the table below (DESIGN.md "Validation and reason codes"); each reading that
arrives with reason OK leaves with exactly one reason, checked in this order:

    NOTNUM  a needed value (sys, dia, glucose) is absent or not finite, or an optional
            value (map, pulse, CGM trend) is infinite; censored glucose (RANGE_LO /
            RANGE_HI flag) needs no value
    RANGE   sys outside [40, 300], dia outside [20, 200], sys <= dia, pulse outside
            [20, 250], glucose outside [0.5, 40] mmol/L
    FUTURE  t more than 5 minutes ahead of the gateway's clock
    STALE   t more than 400 days behind the gateway's clock, or before 2015-01-01

Side effects on OK and rejected readings alike: a reading without a measurement time takes
its arrival time ``rx`` (flags HAS_TIME | T_FROM_RX), and one measured more than 24 h
before it arrived gets the LATE flag. Records of kind GLU_CONTEXT get the same time
handling and time checks (FUTURE, STALE) but no value checks (they carry no measurement of
their own); a record of kind NONE is SCHEMA. Records that arrive with a reason other than
OK are left as they are.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel
from .codes import Flag, Kind, Reason

MINUTE_MS = 60_000
DAY_MS = 86_400_000

# name: (low, high), inclusive, canonical units.
PLAUSIBLE = {
    "sys": (40.0, 300.0),
    "dia": (20.0, 200.0),
    "pulse": (20.0, 250.0),
    "glucose": (0.5, 40.0),
}
FUTURE_TOLERANCE_MS = 5 * MINUTE_MS
STALE_AGE_MS = 400 * DAY_MS
EARLIEST_T_MS = 1_420_070_400_000  # 2015-01-01T00:00:00Z
LATE_AGE_MS = 24 * 60 * MINUTE_MS

_SYS_LO, _SYS_HI = PLAUSIBLE["sys"]
_DIA_LO, _DIA_HI = PLAUSIBLE["dia"]
_PUL_LO, _PUL_HI = PLAUSIBLE["pulse"]
_GLU_LO, _GLU_HI = PLAUSIBLE["glucose"]

_OK = int(Reason.OK)
_BP, _GLU, _CGM, _CONTEXT = int(Kind.BP), int(Kind.GLU), int(Kind.CGM), int(Kind.GLU_CONTEXT)
_HAS_TIME, _T_FROM_RX, _LATE = int(Flag.HAS_TIME), int(Flag.T_FROM_RX), int(Flag.LATE)
_CENSORED = int(Flag.RANGE_LO | Flag.RANGE_HI)
_NOTNUM, _RANGE, _FUTURE, _STALE, _SCHEMA = (
    int(Reason.NOTNUM), int(Reason.RANGE), int(Reason.FUTURE), int(Reason.STALE), int(Reason.SCHEMA)
)


@kernel
def _value_reason(kind, flags, v0, v1, v2, v3):
    """Reason code of a reading's values alone (OK, NOTNUM or RANGE)."""
    if kind == _BP:
        if not (np.isfinite(v0) and np.isfinite(v1)) or np.isinf(v2) or np.isinf(v3):
            return _NOTNUM
        if not (_SYS_LO <= v0 <= _SYS_HI and _DIA_LO <= v1 <= _DIA_HI and v0 > v1):
            return _RANGE
        if not np.isnan(v3) and not (_PUL_LO <= v3 <= _PUL_HI):
            return _RANGE
        return _OK
    if flags & _CENSORED == 0:
        if not np.isfinite(v0):
            return _NOTNUM
        if not (_GLU_LO <= v0 <= _GLU_HI):
            return _RANGE
    if kind == _CGM and np.isinf(v1):
        return _NOTNUM
    return _OK


@kernel
def validate(kind, flags, t, rx, v, reason, now_ms):
    """Validate a batch in place.

    Parameters
    ----------
    kind : uint8[n]
    flags : uint16[n], updated (HAS_TIME, T_FROM_RX, LATE)
    t : int64[n], measurement time in ms UTC; set to ``rx`` where absent
    rx : int64[n], arrival time in ms UTC (a gateway or hub clock, never near the int64 limits)
    v : float64[n, 4], values in canonical units (NaN = absent)
    reason : uint8[n], updated where OK on entry
    now_ms : int, the gateway's clock in ms UTC
    """
    for i in range(kind.shape[0]):
        if reason[i] != _OK:
            continue
        k = kind[i]
        if k != _BP and k != _GLU and k != _CGM and k != _CONTEXT:
            reason[i] = _SCHEMA
            continue
        if flags[i] & _HAS_TIME == 0:
            t[i] = rx[i]
            flags[i] |= _HAS_TIME | _T_FROM_RX
        if t[i] < rx[i] - LATE_AGE_MS:
            flags[i] |= _LATE
        r = _OK if k == _CONTEXT else _value_reason(k, flags[i], v[i, 0], v[i, 1], v[i, 2], v[i, 3])
        if r == _OK:
            if t[i] > now_ms + FUTURE_TOLERANCE_MS:
                r = _FUTURE
            elif t[i] < now_ms - STALE_AGE_MS or t[i] < EARLIEST_T_MS:
                r = _STALE
        reason[i] = r
