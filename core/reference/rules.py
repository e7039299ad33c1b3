"""Pure-Python twin of ``core.rules.reading_alerts``: same name, signature and results.

Written plainly: one reading at a time, each family decided by an ``if`` chain in the
order of the rules table, Python floats and ints throughout.
"""

from __future__ import annotations

import math

from ..codes import Flag, Kind, Reason
from ..rule_tables import CGM_DERIVE_MAX_MS, Param, Rule


def _bp_level(sys_: float, dia: float, th: dict[str, float]) -> Rule | None:
    if sys_ >= th["crisis_sys"] or dia >= th["crisis_dia"]:
        return Rule.BP_CRISIS
    if sys_ < th["low_sys"]:
        return Rule.BP_LOW
    return None


def _pulse(pulse: float, th: dict[str, float]) -> Rule | None:
    if pulse < th["pulse_low"] or pulse > th["pulse_high"]:
        return Rule.PULSE
    return None


def _glucose_level(glu: float, low: bool, high: bool, th: dict[str, float]) -> Rule | None:
    if low or glu < th["glu_low_l2"]:
        return Rule.GLU_LOW_L2
    if glu < th["glu_low_l1"]:
        return Rule.GLU_LOW_L1
    if high or glu > th["glu_high"]:
        return Rule.GLU_HIGH
    return None


def reading_alerts(patient, kind, t, v, flags, reason, thresholds, cgm_last_t, cgm_last_glu, out_reading, out_rule):
    """Twin of ``core.rules.reading_alerts``; see there for parameters and semantics."""
    n = len(patient)
    if len(out_reading) < 2 * n or len(out_rule) < 2 * n:
        raise ValueError("reading_alerts: output arrays need 2 rows per reading")
    n_patients = min(len(thresholds), len(cgm_last_t), len(cgm_last_glu))
    alerts: list[tuple[int, Rule]] = []
    for i in range(n):
        p = int(patient[i])
        f = int(flags[i])
        if int(reason[i]) != Reason.OK or p < 0 or f & Flag.CONTROL:
            continue
        if int(kind[i]) not in (Kind.BP, Kind.GLU, Kind.CGM):
            continue
        if p >= n_patients:
            raise IndexError("reading_alerts: patient index beyond the thresholds/state rows")
        th = {param.name: float(thresholds[p, param]) for param in Param}
        values = [float(x) for x in v[i]]
        if int(kind[i]) == Kind.BP:
            found = [_bp_level(values[0], values[1], th), _pulse(values[3], th)]
            alerts.extend((i, rule) for rule in found if rule is not None)
            continue
        low = bool(f & Flag.RANGE_LO)
        high = bool(f & Flag.RANGE_HI)
        glu = math.nan if (low or high) else values[0]
        level = _glucose_level(glu, low, high, th)
        if level is not None:
            alerts.append((i, level))
        if int(kind[i]) != Kind.CGM:
            continue
        now = int(t[i])
        last_t = int(cgm_last_t[p])
        last_glu = float(cgm_last_glu[p])
        rate = values[1]
        if math.isnan(rate) and last_t < now and now - last_t <= CGM_DERIVE_MAX_MS:
            rate = (glu - last_glu) / ((now - last_t) / 60000.0)
        if rate < -th["cgm_fall_rate"] and glu < th["cgm_fall_below"]:
            alerts.append((i, Rule.CGM_FALLING))
        if now > last_t:
            cgm_last_t[p] = now
            cgm_last_glu[p] = glu
    for row, (i, rule) in enumerate(alerts):
        out_reading[row] = i
        out_rule[row] = rule
    return len(alerts)

