"""Pure-Python twin of core/validate.py: the same checks, one reading at a time."""

from __future__ import annotations

import math

import numpy as np

from ..codes import Flag, Kind, Reason
from ..validate import EARLIEST_T_MS, FUTURE_TOLERANCE_MS, LATE_AGE_MS, PLAUSIBLE, STALE_AGE_MS


def _within(name: str, x: float) -> bool:
    low, high = PLAUSIBLE[name]
    return low <= x <= high


def _value_reason(kind: int, flags: int, values: list[float]) -> Reason:
    if kind == Kind.BP:
        sys_, dia, map_, pulse = values
        if not (math.isfinite(sys_) and math.isfinite(dia)) or math.isinf(map_) or math.isinf(pulse):
            return Reason.NOTNUM
        if not (_within("sys", sys_) and _within("dia", dia) and sys_ > dia):
            return Reason.RANGE
        if not math.isnan(pulse) and not _within("pulse", pulse):
            return Reason.RANGE
        return Reason.OK
    censored = flags & (Flag.RANGE_LO | Flag.RANGE_HI)
    if not censored:
        if not math.isfinite(values[0]):
            return Reason.NOTNUM
        if not _within("glucose", values[0]):
            return Reason.RANGE
    if kind == Kind.CGM and math.isinf(values[1]):
        return Reason.NOTNUM
    return Reason.OK


def validate(kind: np.ndarray, flags: np.ndarray, t: np.ndarray, rx: np.ndarray, v: np.ndarray,
             reason: np.ndarray, now_ms: int) -> None:
    """Validate a batch in place; see core.validate.validate for the contract."""
    for i in range(len(kind)):
        if reason[i] != Reason.OK:
            continue
        if kind[i] not in (Kind.BP, Kind.GLU, Kind.CGM, Kind.GLU_CONTEXT):
            reason[i] = Reason.SCHEMA
            continue
        if not flags[i] & Flag.HAS_TIME:
            t[i] = rx[i]
            flags[i] |= Flag.HAS_TIME | Flag.T_FROM_RX
        measured, arrived = int(t[i]), int(rx[i])
        if measured < arrived - LATE_AGE_MS:
            flags[i] |= Flag.LATE
        verdict = (Reason.OK if kind[i] == Kind.GLU_CONTEXT else
                   _value_reason(int(kind[i]), int(flags[i]), [float(x) for x in v[i]]))
        if verdict == Reason.OK and measured > now_ms + FUTURE_TOLERANCE_MS:
            verdict = Reason.FUTURE
        elif verdict == Reason.OK and (measured < now_ms - STALE_AGE_MS or measured < EARLIEST_T_MS):
            verdict = Reason.STALE
        reason[i] = verdict
