"""All core stages over one batch, with the state they keep between batches.

    validate -> bind patient -> dedup -> windows -> reading rules

Dedup runs after binding so that only readings that will be stored enter the dedup table:
an UNBOUND reading is quarantined and can be replayed once its device is bound, without
being taken for a duplicate of itself. Window rules run apart, when a patient's local day
closes (``close_days``), never per reading.

``Pipeline`` composes the stage functions of one implementation module (``core.compiled``
or ``core.reference``), so the twin pipeline is the same composition of the twin stages.
"""

from __future__ import annotations

import numpy as np

from .bindings import Bindings
from .dedup_keys import MAX_CAPACITY, Recall
from .rule_tables import cgm_state, default_thresholds

READING_ALERT_DTYPE = np.dtype([("reading", "<i4"), ("rule", "u1")], align=True)


class Pipeline:
    """The core's state (dedup table, windows, last CGM reading per patient) and its stages.

    ``impl`` is ``core.compiled`` or ``core.reference``; ``tz_min`` int16[n_patients] is each
    patient's UTC offset (minutes); ``thresholds`` float64[n_patients, N_PARAMS] the
    patients' alert thresholds (defaults when omitted); ``dedup_capacity`` the number of
    keys the dedup table is sized for at the start (a gateway passes its store's key
    count), so that it does not re-insert every key each time it doubles while filling;
    ``dedup_max_capacity`` the table's bound in slots (``core.dedup_keys.MAX_CAPACITY``);
    ``windows`` a restored ``impl.WindowState`` for the n_patients (default: empty).
    """

    def __init__(self, impl, *, n_patients: int, tz_min: np.ndarray, bindings: Bindings,
                 thresholds: np.ndarray | None = None, dedup_capacity: int = 0,
                 dedup_max_capacity: int = MAX_CAPACITY, windows=None) -> None:
        self.impl = impl
        self.bindings = bindings
        self.thresholds = default_thresholds(n_patients) if thresholds is None else thresholds
        self.dedup = impl.DedupTable(capacity=dedup_capacity, max_capacity=dedup_max_capacity)
        self.windows = impl.WindowState(n_patients, tz_min) if windows is None else windows
        self.cgm_last_t, self.cgm_last_glu = cgm_state(n_patients)

    def set_registry(self, *, tz_min: np.ndarray, bindings: Bindings, thresholds: np.ndarray | None = None) -> None:
        """Take a changed registry: new bindings, patients' offsets (int16[n_patients]) and,
        when given, their thresholds (float64[n_patients, N_PARAMS]: individual targets).

        Patients are only ever added: state grows for the new ones (default thresholds
        unless given, no CGM history) and keeps everything it knew.
        """
        n_old, n_new = len(self.cgm_last_t), len(tz_min)
        if n_new < n_old:
            raise ValueError(f"the registry lost patients: {n_old} -> {n_new}")
        if thresholds is not None and thresholds.shape != (n_new, self.thresholds.shape[1]):
            raise ValueError(f"thresholds of shape {thresholds.shape} for {n_new} patients")
        if n_new > n_old:
            self.windows.grow(n_new)
            self.thresholds = np.concatenate([self.thresholds, default_thresholds(n_new - n_old)])
            last_t, last_glu = cgm_state(n_new - n_old)
            self.cgm_last_t = np.concatenate([self.cgm_last_t, last_t])
            self.cgm_last_glu = np.concatenate([self.cgm_last_glu, last_glu])
        self.windows.tz_min = np.asarray(tz_min, dtype=np.int16).copy()
        self.bindings = bindings
        if thresholds is not None:
            self.thresholds = np.ascontiguousarray(thresholds, dtype=np.float64)

    def process(self, batch: np.ndarray, now_ms: int, recall: Recall | None = None) -> np.ndarray:
        """Run every stage on ``batch`` (READING_DTYPE, updated in place: reason, patient,
        flags, t) at gateway time ``now_ms``; return its reading alerts
        (READING_ALERT_DTYPE: index of the reading in the batch, Rule code). ``recall``
        looks up the stored keys of records measured before the dedup table's horizon
        (``DedupTable.check_and_insert``)."""
        impl = self.impl
        impl.validate(batch["kind"], batch["flags"], batch["t"], batch["rx"], batch["v"], batch["reason"], now_ms)
        impl.bind(batch["device"], batch["user"], batch["t"], batch["reason"], batch["patient"], self.bindings)
        self.dedup.check_and_insert(batch["device"], batch["kind"], batch["flags"], batch["seq"],
                                    batch["fingerprint"], batch["t"], batch["reason"], recall)
        self.windows.update(batch, self.thresholds)
        alerts = np.zeros(2 * len(batch), dtype=READING_ALERT_DTYPE)
        n = impl.reading_alerts(batch["patient"], batch["kind"], batch["t"], batch["v"], batch["flags"],
                                batch["reason"], self.thresholds, self.cgm_last_t, self.cgm_last_glu,
                                alerts["reading"], alerts["rule"])
        return alerts[:n]

    def close_days(self, patients: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Window rules for patients whose local day ``days`` closed (see WindowState)."""
        return self.windows.close_days(patients, days, self.thresholds)
