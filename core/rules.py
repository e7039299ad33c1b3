"""The numba kernel for the reading rules of ``core.rule_tables``.

Reading rules (``BP_CRISIS`` ... ``CGM_FALLING``) fire on a single reading and are evaluated
here by ``reading_alerts``, with the thresholds and state laid out by ``core.rule_tables``
(``default_thresholds``, ``cgm_state``).
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel
from ._prefetch import PREFETCH_DISTANCE, prefetch
from .codes import Flag, Kind, Reason
from .rule_tables import CGM_DERIVE_MAX_MS, Param, Rule

# Readings that never raise a clinical alert (besides reason != OK and no patient): control
# solution is not the patient's blood. A reading the device flagged as disturbed (ARTIFACT:
# movement, loose cuff, position) is left out of windows but still evaluated here: a
# possible crisis must reach the physician, and an emergency asks for a re-measurement.
NOT_CLINICAL = int(Flag.CONTROL)

_OK = int(Reason.OK)
_BP = int(Kind.BP)
_GLU = int(Kind.GLU)
_CGM = int(Kind.CGM)
_LO = int(Flag.RANGE_LO)
_HI = int(Flag.RANGE_HI)
_CENSORED = _LO | _HI
_DERIVE_MAX = np.uint64(CGM_DERIVE_MAX_MS)


@kernel
def _emit(out_reading, out_rule, n_out, reading, rule):
    """Write alert row ``n_out`` (reading index, rule); return the next row."""
    out_reading[n_out] = reading
    out_rule[n_out] = rule
    return n_out + 1


@kernel
def reading_alerts(patient, kind, t, v, flags, reason, thresholds, cgm_last_t, cgm_last_glu, out_reading, out_rule):
    """Evaluate the reading rules on a batch; write one row per alert.

    Only readings with reason OK, a patient, and not CONTROL are evaluated (ARTIFACT
    readings are: see ``NOT_CLINICAL``). Per reading, at most one rule per family is raised (the most severe), and
    alerts come out in reading order, then in ``READING_FAMILIES`` order. Censored glucose
    (RANGE_LO / RANGE_HI) counts as below / above every glucose threshold and has no value.

    Parameters
    ----------
    patient : int32[n]
        Patient index, -1 when unbound.
    kind : uint8[n]
        ``Kind`` code.
    t : int64[n]
        Measurement time, ms UTC.
    v : float64[n, 4]
        Values (BP: sys, dia, map mmHg, pulse bpm; GLU/CGM: glucose mmol/L, CGM trend
        mmol/L/min, ...); NaN = absent.
    flags : uint16[n]
        ``Flag`` bits.
    reason : uint8[n]
        ``Reason`` code.
    thresholds : float64[n_patients, N_PARAMS]
        Per-patient thresholds, columns in ``Param`` order.
    cgm_last_t : int64[n_patients]
        Time of each patient's latest CGM reading; updated in place.
    cgm_last_glu : float64[n_patients]
        Its glucose (NaN when censored or absent); updated in place.
    out_reading : int64[>= 2n]
        Output: index of the reading each alert belongs to.
    out_rule : uint8[>= 2n]
        Output: ``Rule`` code of each alert.

    Returns
    -------
    int
        Number of alerts written to the head of the output arrays.

    Raises
    ------
    ValueError
        An output array holds fewer than 2n rows.
    IndexError
        A reading's patient has no row in thresholds or in the CGM state.

    Notes
    -----
    CGM_FALLING uses the reading's trend ``v[1]`` when it is not NaN; otherwise the rate
    (glucose - last glucose) / minutes since the patient's previous CGM reading, when that
    reading is earlier and at most ``CGM_DERIVE_MAX_MS`` old. It fires when the rate is
    below ``-cgm_fall_rate`` and glucose below ``cgm_fall_below``. The patient's last CGM
    reading is replaced whenever a reading is later than the stored one. Columns may be
    strided views of a READING_DTYPE batch; the columns all have length n.
    """
    n = patient.shape[0]
    if out_reading.shape[0] < 2 * n or out_rule.shape[0] < 2 * n:
        raise ValueError("reading_alerts: output arrays need 2 rows per reading")
    n_patients = min(thresholds.shape[0], cgm_last_t.shape[0], cgm_last_glu.shape[0])
    n_out = 0
    for i in range(n):
        ahead = i + PREFETCH_DISTANCE
        if ahead < n and 0 <= patient[ahead] < n_patients:
            prefetch(thresholds, patient[ahead])
        p = patient[i]
        f = flags[i]
        k = kind[i]
        if reason[i] != _OK or p < 0 or (f & NOT_CLINICAL) != 0:
            continue
        if k != _BP and k != _GLU and k != _CGM:
            continue
        if p >= n_patients:
            raise IndexError("reading_alerts: patient index beyond the thresholds/state rows")
        if k == _BP:
            sys_ = v[i, 0]
            dia = v[i, 1]
            pulse = v[i, 3]
            if sys_ >= thresholds[p, Param.crisis_sys] or dia >= thresholds[p, Param.crisis_dia]:
                n_out = _emit(out_reading, out_rule, n_out, i, Rule.BP_CRISIS)
            elif sys_ < thresholds[p, Param.low_sys]:
                n_out = _emit(out_reading, out_rule, n_out, i, Rule.BP_LOW)
            if pulse < thresholds[p, Param.pulse_low] or pulse > thresholds[p, Param.pulse_high]:
                n_out = _emit(out_reading, out_rule, n_out, i, Rule.PULSE)
            continue
        glu = v[i, 0]
        if (f & _CENSORED) != 0:
            glu = np.nan
        if (f & _LO) != 0 or glu < thresholds[p, Param.glu_low_l2]:
            n_out = _emit(out_reading, out_rule, n_out, i, Rule.GLU_LOW_L2)
        elif glu < thresholds[p, Param.glu_low_l1]:
            n_out = _emit(out_reading, out_rule, n_out, i, Rule.GLU_LOW_L1)
        elif (f & _HI) != 0 or glu > thresholds[p, Param.glu_high]:
            n_out = _emit(out_reading, out_rule, n_out, i, Rule.GLU_HIGH)
        if k != _CGM:
            continue
        ti = t[i]
        last_t = cgm_last_t[p]
        rate = v[i, 1]
        if rate != rate and last_t < ti:
            # t - last_t > 0 always fits uint64, even where int64 would overflow.
            elapsed = np.uint64(ti) - np.uint64(last_t)
            if elapsed <= _DERIVE_MAX:
                rate = (glu - cgm_last_glu[p]) / (np.float64(elapsed) / 60000.0)
        if rate < -thresholds[p, Param.cgm_fall_rate] and glu < thresholds[p, Param.cgm_fall_below]:
            n_out = _emit(out_reading, out_rule, n_out, i, Rule.CGM_FALLING)
        if ti > last_t:
            cgm_last_t[p] = ti
            cgm_last_glu[p] = glu
    return n_out
