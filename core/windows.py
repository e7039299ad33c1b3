"""Per-patient window state on measurement time, and the window rules evaluated on it.

State is kept incrementally, never by sorting: each (patient, metric) row has a ring of
``RING_DAYS`` daily slots, slot ``day % RING_DAYS`` holding the accumulators of one local
day and its day number as a tag. A reading of day d goes to slot d % RING_DAYS: a slot
holding an older day is reset to d first; a slot holding a newer day means the reading is
too old for the ring, and it is left out of windows (it is still stored). Late readings
therefore update the day they were measured on, as long as it is within the ring.

A patient's local day is ``floor((t + tz_min * 60_000) / 86_400_000)`` with ``tz_min`` the
patient's UTC offset in minutes. Readings enter windows when reason is OK, a patient is
bound, neither ARTIFACT nor CONTROL is flagged, and the kind is BP, GLU or CGM.

Window rules (``BP_HOME_HIGH``, ``CGM_TIR``) are evaluated by ``WindowState.close_days``
when a patient's day closes, over the days ending with it. The layout of the state (``Metric``,
``Acc``, ``RING_DAYS``, ``WINDOW_ALERT_DTYPE``) is ``core.window_layout``.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel
from ._prefetch import PREFETCH_DISTANCE, prefetch
from .codes import Flag, Kind, Reason
from .rule_tables import Param, Rule, default_thresholds
from .window_layout import (
    BP_WINDOW_DAYS,
    CACHE_LINE,
    CGM_WINDOW_DAYS,
    DAY_MS,
    MINUTE_MS,
    N_ACC,
    N_METRICS,
    RING_DAYS,
    WINDOW_ALERT_DTYPE,
    Acc,
    empty_slots,
)

_OK = int(Reason.OK)
_BP = int(Kind.BP)
_GLU = int(Kind.GLU)
_CGM = int(Kind.CGM)
_NOT_CLINICAL = int(Flag.ARTIFACT | Flag.CONTROL)
_LO = int(Flag.RANGE_LO)
_HI = int(Flag.RANGE_HI)
_CENSORED = _LO | _HI


@kernel
def _metric(kind):
    """Metric row offset of a reading kind; -1 for kinds without a window."""
    if kind == _BP:
        return 0
    if kind == _GLU:
        return 1
    if kind == _CGM:
        return 2
    return -1


@kernel
def _local_day(t, tz_min):
    """floor((t + tz_min * MINUTE_MS) / DAY_MS), without overflowing int64 near its ends."""
    return t // DAY_MS + (t % DAY_MS + np.int64(tz_min) * MINUTE_MS) // DAY_MS


@kernel
def _update(patient, kind, t, v, flags, reason, tz_min, thresholds, acc):
    """Add a batch's readings to their daily slots, in reading order.

    A reading enters when reason is OK, the patient is bound, neither ARTIFACT nor
    CONTROL is flagged, the kind is BP, GLU or CGM, and it has a value (BP: sys and dia;
    glucose: a value or a censored flag).

    Parameters
    ----------
    patient, kind, t, v, flags, reason
        Columns of a READING_DTYPE batch (int32, uint8, int64 ms UTC, float64[n, 4],
        uint16, uint8), possibly strided.
    tz_min : int16[n_patients]
        Each patient's UTC offset, minutes.
    thresholds : float64[n_patients, N_PARAMS]
        Per-patient thresholds (the glucose bins use glu_low_l2, tir_low, tir_high).
    acc : float64[n_patients * N_METRICS, RING_DAYS, N_ACC]
        Daily slots (``Acc`` columns); updated in place.

    Returns
    -------
    int
        Readings left out because their day is older than the ring holds.

    Raises
    ------
    IndexError
        An eligible reading's patient has no row in tz_min, thresholds or acc.
    """
    n_patients = min(tz_min.shape[0], thresholds.shape[0], acc.shape[0] // N_METRICS)
    slots = acc.reshape(acc.shape[0] * RING_DAYS, N_ACC)
    n = patient.shape[0]
    too_old = 0
    for i in range(n):
        ahead = i + PREFETCH_DISTANCE
        if ahead < n:
            q = patient[ahead]
            m = _metric(kind[ahead])
            if 0 <= q < n_patients and m >= 0:
                prefetch(slots, (q * N_METRICS + m) * RING_DAYS + _local_day(t[ahead], tz_min[q]) % RING_DAYS)
        p = patient[i]
        f = flags[i]
        metric = _metric(kind[i])
        if reason[i] != _OK or p < 0 or (f & _NOT_CLINICAL) != 0 or metric < 0:
            continue
        if p >= n_patients:
            raise IndexError("WindowState.update: patient index beyond the state rows")
        x0 = v[i, 0]
        x1 = v[i, 1]
        if metric == 0:
            if x0 != x0 or x1 != x1:
                continue
        elif (f & _CENSORED) == 0 and x0 != x0:
            continue
        iday = _local_day(t[i], tz_min[p])
        day = np.float64(iday)
        row = p * N_METRICS + metric
        slot = iday % RING_DAYS
        held = acc[row, slot, Acc.DAY]
        if held > day:
            too_old += 1
            continue
        if held < day:
            acc[row, slot, Acc.DAY] = day
            for a in range(1, N_ACC):
                acc[row, slot, a] = 0.0
        acc[row, slot, Acc.N] += 1.0
        if metric == 0:
            acc[row, slot, Acc.N_VALUED] += 1.0
            acc[row, slot, Acc.SUM0] += x0
            acc[row, slot, Acc.SUM1] += x1
        elif (f & _LO) != 0:
            acc[row, slot, Acc.N_BELOW_L2] += 1.0
            acc[row, slot, Acc.N_BELOW] += 1.0
        elif (f & _HI) == 0:
            acc[row, slot, Acc.N_VALUED] += 1.0
            acc[row, slot, Acc.SUM0] += x0
            acc[row, slot, Acc.SUM1] += x0 * x0
            if x0 < thresholds[p, Param.glu_low_l2]:
                acc[row, slot, Acc.N_BELOW_L2] += 1.0
            if x0 < thresholds[p, Param.tir_low]:
                acc[row, slot, Acc.N_BELOW] += 1.0
            elif x0 <= thresholds[p, Param.tir_high]:
                acc[row, slot, Acc.N_IN] += 1.0
    return too_old


@kernel
def _emit(out_patient, out_rule, out_day, out_values, n_out, patient, rule, day, v0, v1, v2, v3):
    """Write window alert row ``n_out`` (patient, rule, day, four values); return the next row."""
    out_patient[n_out] = patient
    out_rule[n_out] = rule
    out_day[n_out] = day
    out_values[n_out, 0] = v0
    out_values[n_out, 1] = v1
    out_values[n_out, 2] = v2
    out_values[n_out, 3] = v3
    return n_out + 1


@kernel
def _close(patients, days, thresholds, acc, out_patient, out_rule, out_day, out_values):
    """Evaluate BP_HOME_HIGH and CGM_TIR for each (patient, closing day).

    Parameters
    ----------
    patients : int32[k]
        Patient indices.
    days : int32[k]
        The local day that closed for each patient.
    thresholds : float64[n_patients, N_PARAMS]
        Per-patient thresholds.
    acc : float64[n_patients * N_METRICS, RING_DAYS, N_ACC]
        Daily slots (see ``_update``); read only.
    out_patient : int32[>= 2k]
    out_rule : uint8[>= 2k]
    out_day : int32[>= 2k]
    out_values : float64[>= 2k, 4]
        Output alerts, in input order, BP_HOME_HIGH before CGM_TIR for one patient.

    Returns
    -------
    int
        Number of alerts written.

    Raises
    ------
    IndexError
        A patient index outside the rows of thresholds or acc.
    """
    n_patients = min(thresholds.shape[0], acc.shape[0] // N_METRICS)
    n_out = 0
    for j in range(patients.shape[0]):
        p = patients[j]
        day = np.int64(days[j])
        if p < 0 or p >= n_patients:
            raise IndexError("WindowState.close_days: patient index outside the state rows")
        # BP_HOME_HIGH (ESH): the first day of the span with readings is discarded.
        row = p * N_METRICS + 0
        discarded = False
        n = 0.0
        sum_sys = 0.0
        sum_dia = 0.0
        days_used = 0.0
        for d in range(day - (BP_WINDOW_DAYS - 1), day + 1):
            slot = d % RING_DAYS
            if acc[row, slot, Acc.DAY] != d or acc[row, slot, Acc.N_VALUED] == 0.0:
                continue
            if not discarded:
                discarded = True
                continue
            n += acc[row, slot, Acc.N_VALUED]
            sum_sys += acc[row, slot, Acc.SUM0]
            sum_dia += acc[row, slot, Acc.SUM1]
            days_used += 1.0
        if n > 0.0 and n >= thresholds[p, Param.home_min_n]:
            mean_sys = sum_sys / n
            mean_dia = sum_dia / n
            if mean_sys >= thresholds[p, Param.home_sys] or mean_dia >= thresholds[p, Param.home_dia]:
                n_out = _emit(out_patient, out_rule, out_day, out_values, n_out, p, Rule.BP_HOME_HIGH, days[j],
                              mean_sys, mean_dia, n, days_used)
        # CGM_TIR over the closing day and the 13 before it.
        row = p * N_METRICS + 2
        count = 0.0
        valued = 0.0
        total = 0.0
        total_sq = 0.0
        below = 0.0
        inside = 0.0
        for d in range(day - (CGM_WINDOW_DAYS - 1), day + 1):
            slot = d % RING_DAYS
            if acc[row, slot, Acc.DAY] != d:
                continue
            count += acc[row, slot, Acc.N]
            valued += acc[row, slot, Acc.N_VALUED]
            total += acc[row, slot, Acc.SUM0]
            total_sq += acc[row, slot, Acc.SUM1]
            below += acc[row, slot, Acc.N_BELOW]
            inside += acc[row, slot, Acc.N_IN]
        expected = CGM_WINDOW_DAYS * thresholds[p, Param.cgm_readings_per_day]
        if count == 0.0 or not expected > 0.0:
            continue
        data_pct = 100.0 * count / expected
        if not data_pct >= thresholds[p, Param.cgm_min_data_pct]:
            continue
        tir_pct = 100.0 * inside / count
        tbr_pct = 100.0 * below / count
        cv_pct = np.nan
        if valued > 0.0:
            mean = total / valued
            variance = total_sq / valued - mean * mean
            if variance < 0.0:
                variance = 0.0
            if mean != 0.0:
                cv_pct = 100.0 * np.sqrt(variance) / mean
        if (
            tir_pct < thresholds[p, Param.tir_min_pct]
            or tbr_pct > thresholds[p, Param.tbr_max_pct]
            or cv_pct > thresholds[p, Param.cv_max_pct]
        ):
            n_out = _emit(out_patient, out_rule, out_day, out_values, n_out, p, Rule.CGM_TIR, days[j],
                          tir_pct, tbr_pct, cv_pct, data_pct)
    return n_out


class WindowState:
    """Daily window state of every patient and metric, and the window rules on it.

    Parameters
    ----------
    n_patients : int
        Number of patients (registry size); rows grow with ``grow``.
    tz_min : int16[n_patients]
        Each patient's UTC offset in minutes, used to find a reading's local day. The
        attribute ``tz_min`` may be written (a zone changed its offset); readings already
        in the ring keep the day they were given.
    """

    def __init__(self, n_patients: int, tz_min: np.ndarray) -> None:
        tz = np.asarray(tz_min, dtype=np.int16)
        if tz.shape != (n_patients,):
            raise ValueError(f"tz_min must have shape ({n_patients},), got {tz.shape}")
        self.tz_min: np.ndarray = tz.copy()
        self._acc = empty_slots(n_patients)
        self._defaults = default_thresholds(n_patients)

    @property
    def n_patients(self) -> int:
        """Number of patients the state has rows for."""
        return int(self.tz_min.shape[0])

    def update(self, batch: np.ndarray, thresholds: np.ndarray | None = None) -> int:
        """Add a batch's readings to their patients' local days, in reading order.

        Parameters
        ----------
        batch : READING_DTYPE[n]
            Validated, deduplicated and bound readings; only eligible ones enter (see the
            module docstring).
        thresholds : float64[n_patients, N_PARAMS], optional
            Per-patient thresholds for the glucose bins; the defaults when omitted.

        Returns
        -------
        int
            Eligible readings left out of windows because their day is older than the ring.

        Raises
        ------
        IndexError
            An eligible reading's patient is beyond the state's (or thresholds') rows.
        """
        if thresholds is None:
            thresholds = self._defaults
        return int(
            _update(
                batch["patient"], batch["kind"], batch["t"], batch["v"], batch["flags"], batch["reason"],
                self.tz_min, thresholds, self._acc,
            )
        )

    def close_days(self, patients: np.ndarray, days: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """Evaluate the window rules for patients whose local day has closed.

        Parameters
        ----------
        patients : int32[k]
            Patient indices.
        days : int32[k]
            The closing local day of each (days since 1970-01-01 in the patient's zone).
        thresholds : float64[n_patients, N_PARAMS]
            Per-patient thresholds.

        Returns
        -------
        WINDOW_ALERT_DTYPE[m]
            Alerts (m <= 2k) in input order, BP_HOME_HIGH before CGM_TIR for one patient.

        Raises
        ------
        ValueError
            patients and days are not 1-D arrays of one length.
        IndexError
            A patient index outside the state's (or thresholds') rows.
        """
        patients = np.asarray(patients, dtype=np.int32)
        days = np.asarray(days, dtype=np.int32)
        if patients.shape != days.shape or patients.ndim != 1:
            raise ValueError("patients and days must be 1-D arrays of one length")
        out = np.zeros(2 * patients.shape[0], dtype=WINDOW_ALERT_DTYPE)
        n = _close(patients, days, thresholds, self._acc, out["patient"], out["rule"], out["day"], out["values"])
        return out[:n]

    def grow(self, n_patients: int) -> None:
        """Add rows for new patients (tz_min 0 until set), keeping all state.

        Raises
        ------
        ValueError
            n_patients is smaller than the current number of patients.
        """
        old = self.n_patients
        if n_patients < old:
            raise ValueError(f"cannot shrink window state from {old} to {n_patients} patients")
        acc = empty_slots(n_patients)
        acc[: old * N_METRICS] = self._acc
        self._acc = acc
        self.tz_min = np.concatenate([self.tz_min, np.zeros(n_patients - old, dtype=np.int16)])
        self._defaults = default_thresholds(n_patients)

    def arrays(self) -> dict[str, np.ndarray]:
        """The state as arrays, for the store to persist (copies).

        Returns
        -------
        dict
            ``tz_min``: int16[n_patients]; ``acc``: float64[n_patients * N_METRICS,
            RING_DAYS, N_ACC], row ``patient * N_METRICS + metric``, slot ``day % RING_DAYS``,
            columns ``Acc``.
        """
        return {"tz_min": self.tz_min.copy(), "acc": self._acc.copy()}

    @classmethod
    def from_arrays(cls, tz_min: np.ndarray, acc: np.ndarray, *, adopt: bool = False) -> WindowState:
        """Restore a state from the arrays ``arrays`` returned (they are copied).

        With ``adopt``, an ``acc`` that is float64, C-contiguous and cache-line aligned (as
        ``empty_slots`` makes it, e.g. ``Store.load_windows``) becomes the state's own array,
        neither allocated again nor copied (about 600 MB for 200,000 patients); the caller
        must not use it afterwards. Any other ``acc`` is copied.

        Raises
        ------
        ValueError
            acc does not have the ring layout for len(tz_min) patients.
        """
        tz = np.asarray(tz_min, dtype=np.int16)
        shape = (tz.shape[0] * N_METRICS, RING_DAYS, N_ACC)
        if acc.shape != shape:
            raise ValueError(f"acc must have shape {shape}, got {acc.shape}")
        if adopt and acc.dtype == np.float64 and acc.flags.c_contiguous and acc.ctypes.data % CACHE_LINE == 0:
            state = cls(0, tz[:0])
            state.tz_min, state._acc, state._defaults = tz.copy(), acc, default_thresholds(tz.shape[0])
            return state
        state = cls(tz.shape[0], tz)
        state._acc[...] = acc
        return state
