"""Pure-Python twin of ``core.windows.WindowState``: same class, methods and results.

Written plainly: the state is a dict keyed by (patient, metric, local day) whose values
are dicts of accumulators, plus the rule that for each patient and metric at most one day
per residue ``day % RING_DAYS`` is kept, the newest. ``arrays`` lays the dict out as the
compiled ring so the two states can be compared and restored into each other.
"""

from __future__ import annotations

import math

import numpy as np

from ..codes import Flag, Kind, Reason
from ..rule_tables import THRESHOLDS, Param, Rule
from ..window_layout import (
    BP_WINDOW_DAYS,
    CGM_WINDOW_DAYS,
    DAY_MS,
    EMPTY_DAY,
    KIND_METRIC,
    N_ACC,
    N_METRICS,
    RING_DAYS,
    WINDOW_ALERT_DTYPE,
    Acc,
    Metric,
)

__all__ = ["WINDOW_ALERT_DTYPE", "Acc", "Metric", "WindowState"]

Key = tuple[int, int, int]  # (patient, metric, local day) or (patient, metric, day % RING_DAYS)
SUMS = [acc for acc in Acc if acc != Acc.DAY]


def _local_day(t: int, tz_min: int) -> int:
    return (t + tz_min * 60_000) // DAY_MS


def _row(thresholds: np.ndarray, patient: int) -> dict[str, float]:
    return {name: float(thresholds[patient, Param[name]]) for name in THRESHOLDS}


class WindowState:
    """Twin of ``core.windows.WindowState``; see there for parameters and semantics."""

    def __init__(self, n_patients: int, tz_min: np.ndarray) -> None:
        tz = np.asarray(tz_min, dtype=np.int16)
        if tz.shape != (n_patients,):
            raise ValueError(f"tz_min must have shape ({n_patients},), got {tz.shape}")
        self.tz_min: np.ndarray = tz.copy()
        self._days: dict[Key, dict[Acc, float]] = {}
        self._kept: dict[Key, int] = {}  # (patient, metric, day % RING_DAYS) -> the day kept

    @property
    def n_patients(self) -> int:
        """Number of patients the state has rows for."""
        return int(self.tz_min.shape[0])

    def _day_for(self, patient: int, metric: int, day: int) -> dict[Acc, float] | None:
        """The accumulators of a day, making room for it in the ring; None if too old."""
        residue = (patient, metric, day % RING_DAYS)
        kept = self._kept.get(residue)
        if kept is not None and kept > day:
            return None
        if kept is not None and kept < day:
            del self._days[(patient, metric, kept)]
        self._kept[residue] = day
        return self._days.setdefault((patient, metric, day), {acc: 0.0 for acc in SUMS})

    def update(self, batch: np.ndarray, thresholds: np.ndarray | None = None) -> int:
        """Twin of ``core.windows.WindowState.update``."""
        if thresholds is None:
            thresholds = np.array([list(THRESHOLDS.values())] * self.n_patients, dtype=np.float64)
        n_rows = min(self.n_patients, len(thresholds))
        too_old = 0
        for record in batch:
            patient = int(record["patient"])
            flags = int(record["flags"])
            kind = int(record["kind"])
            if int(record["reason"]) != Reason.OK or patient < 0 or flags & (Flag.ARTIFACT | Flag.CONTROL):
                continue
            if kind not in KIND_METRIC:
                continue
            if patient >= n_rows:
                raise IndexError("WindowState.update: patient index beyond the state rows")
            metric = KIND_METRIC[Kind(kind)]
            values = [float(x) for x in record["v"]]
            low = bool(flags & Flag.RANGE_LO)
            high = bool(flags & Flag.RANGE_HI)
            if metric == Metric.BP and (math.isnan(values[0]) or math.isnan(values[1])):
                continue
            if metric != Metric.BP and not (low or high) and math.isnan(values[0]):
                continue
            sums = self._day_for(patient, metric, _local_day(int(record["t"]), int(self.tz_min[patient])))
            if sums is None:
                too_old += 1
                continue
            sums[Acc.N] += 1
            if metric == Metric.BP:
                sums[Acc.N_VALUED] += 1
                sums[Acc.SUM0] += values[0]
                sums[Acc.SUM1] += values[1]
            elif low:
                sums[Acc.N_BELOW_L2] += 1
                sums[Acc.N_BELOW] += 1
            elif not high:
                glu = values[0]
                th = _row(thresholds, patient)
                sums[Acc.N_VALUED] += 1
                sums[Acc.SUM0] += glu
                sums[Acc.SUM1] += glu * glu
                if glu < th["glu_low_l2"]:
                    sums[Acc.N_BELOW_L2] += 1
                if glu < th["tir_low"]:
                    sums[Acc.N_BELOW] += 1
                elif glu <= th["tir_high"]:
                    sums[Acc.N_IN] += 1
        return too_old

    def _span(self, patient: int, metric: Metric, day: int, n_days: int) -> list[dict[Acc, float]]:
        """Accumulators of the days day - n_days + 1 .. day that hold readings, oldest first."""
        found = [self._days.get((patient, metric, d)) for d in range(day - n_days + 1, day + 1)]
        return [sums for sums in found if sums is not None]

    def _bp_home_high(self, patient: int, day: int, th: dict[str, float]) -> list[float] | None:
        measured = [sums for sums in self._span(patient, Metric.BP, day, BP_WINDOW_DAYS) if sums[Acc.N_VALUED] > 0]
        kept = measured[1:]  # ESH: the first day with readings is discarded
        n = 0.0
        sum_sys = 0.0
        sum_dia = 0.0
        for sums in kept:
            n += sums[Acc.N_VALUED]
            sum_sys += sums[Acc.SUM0]
            sum_dia += sums[Acc.SUM1]
        if not (n > 0 and n >= th["home_min_n"]):  # a NaN target never fires
            return None
        mean_sys = sum_sys / n
        mean_dia = sum_dia / n
        if mean_sys >= th["home_sys"] or mean_dia >= th["home_dia"]:
            return [mean_sys, mean_dia, n, float(len(kept))]
        return None

    def _cgm_tir(self, patient: int, day: int, th: dict[str, float]) -> list[float] | None:
        totals = {acc: 0.0 for acc in SUMS}
        for sums in self._span(patient, Metric.CGM, day, CGM_WINDOW_DAYS):
            for acc in SUMS:
                totals[acc] += sums[acc]
        count = totals[Acc.N]
        expected = CGM_WINDOW_DAYS * th["cgm_readings_per_day"]
        if count == 0 or not expected > 0:
            return None
        data_pct = 100.0 * count / expected
        if not data_pct >= th["cgm_min_data_pct"]:
            return None
        tir_pct = 100.0 * totals[Acc.N_IN] / count
        tbr_pct = 100.0 * totals[Acc.N_BELOW] / count
        cv_pct = math.nan
        if totals[Acc.N_VALUED] > 0:
            mean = totals[Acc.SUM0] / totals[Acc.N_VALUED]
            variance = totals[Acc.SUM1] / totals[Acc.N_VALUED] - mean * mean
            if variance < 0:
                variance = 0.0
            if mean != 0:
                cv_pct = 100.0 * math.sqrt(variance) / mean
        if tir_pct < th["tir_min_pct"] or tbr_pct > th["tbr_max_pct"] or cv_pct > th["cv_max_pct"]:
            return [tir_pct, tbr_pct, cv_pct, data_pct]
        return None

    def close_days(self, patients: np.ndarray, days: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """Twin of ``core.windows.WindowState.close_days``."""
        patients = np.asarray(patients, dtype=np.int32)
        days = np.asarray(days, dtype=np.int32)
        if patients.shape != days.shape or patients.ndim != 1:
            raise ValueError("patients and days must be 1-D arrays of one length")
        n_rows = min(self.n_patients, len(thresholds))
        alerts = np.zeros(2 * len(patients), dtype=WINDOW_ALERT_DTYPE)
        n = 0
        for patient, day in zip(patients.tolist(), days.tolist()):
            if not 0 <= patient < n_rows:
                raise IndexError("WindowState.close_days: patient index outside the state rows")
            th = _row(thresholds, patient)
            for rule, evaluate in ((Rule.BP_HOME_HIGH, self._bp_home_high), (Rule.CGM_TIR, self._cgm_tir)):
                values = evaluate(patient, day, th)
                if values is not None:
                    alerts[n] = (patient, rule, day, values)
                    n += 1
        return alerts[:n]

    def grow(self, n_patients: int) -> None:
        """Twin of ``core.windows.WindowState.grow``."""
        if n_patients < self.n_patients:
            raise ValueError(f"cannot shrink window state from {self.n_patients} to {n_patients} patients")
        self.tz_min = np.concatenate([self.tz_min, np.zeros(n_patients - self.n_patients, dtype=np.int16)])

    def arrays(self) -> dict[str, np.ndarray]:
        """Twin of ``core.windows.WindowState.arrays``: the dict laid out as the ring."""
        acc = np.zeros((self.n_patients * N_METRICS, RING_DAYS, N_ACC), dtype=np.float64)
        acc[:, :, Acc.DAY] = EMPTY_DAY
        for (patient, metric, day), sums in self._days.items():
            slot = acc[patient * N_METRICS + metric, day % RING_DAYS]
            slot[Acc.DAY] = day
            for column in SUMS:
                slot[column] = sums[column]
        return {"tz_min": self.tz_min.copy(), "acc": acc}

    @classmethod
    def from_arrays(cls, tz_min: np.ndarray, acc: np.ndarray, *, adopt: bool = False) -> WindowState:
        """Twin of ``core.windows.WindowState.from_arrays``; this state keeps no array, so
        ``adopt`` changes nothing here."""
        tz = np.asarray(tz_min, dtype=np.int16)
        n = tz.shape[0]
        if acc.shape != (n * N_METRICS, RING_DAYS, N_ACC):
            raise ValueError(f"acc must have shape {(n * N_METRICS, RING_DAYS, N_ACC)}, got {acc.shape}")
        state = cls(n, tz)
        for row in range(n * N_METRICS):
            for slot in range(RING_DAYS):
                if acc[row, slot, Acc.DAY] == EMPTY_DAY:
                    continue
                day = int(acc[row, slot, Acc.DAY])
                patient, metric = divmod(row, N_METRICS)
                state._days[(patient, metric, day)] = {column: float(acc[row, slot, column]) for column in SUMS}
                state._kept[(patient, metric, slot)] = day
        return state
