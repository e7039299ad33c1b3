"""Window state of gateways sharing one store (``pmpgw run --shared``): kept in the store.

With several gateways in an MQTT shared subscription, each receives only part of a
patient's readings, so no gateway's own ``WindowState`` holds a whole window. The daily
accumulators of a (patient, metric, local day) (``core.window_layout.Acc`` N .. N_IN) are
sums, so they are ADDITIVE: each batch adds the sums of the readings it stored (not those
the store already held) to the store's, in the batch's transaction (``Store.commit_batch``
``day_sums``: an upsert that adds; no lock, commutative, exact whichever gateway stores a
reading, and nothing is added twice or lost when a gateway dies). At day close a gateway
claims the (patient, day) pairs in the store, reads the claimed patients' sums of the
RING_DAYS days ending with the closed day, and evaluates the window rules on them
(``Store.commit_batch`` ``day_close``).

The first gateway ever started shared on a database seeds the store's sums with its own
window state as restored at its start (``Store.seed_day_sums``, once per database): the
readings a single gateway stored before are in it, so the first windows are whole.

Both directions use the core's own ``WindowState`` (compiled or reference, as the gateway
runs), so a reading is classified exactly as a single gateway's state would: the batch's
new rows go into a fresh state of just their patients, whose used slots are the sums; the
stored sums go into a fresh state of the closing patients, whose ``close_days`` gives the
alerts.
"""

from __future__ import annotations

import numpy as np

from core.codes import Reason
from core.window_layout import DAY_MS, DAY_SUMS_DTYPE, EMPTY_DAY, MINUTE_MS, N_METRICS, RING_DAYS, Acc, empty_slots


def local_day(t: np.ndarray, tz_min: np.ndarray) -> np.ndarray:
    """int64[n]: the local day (days since 1970-01-01) of ms UTC ``t`` at UTC offsets ``tz_min`` (minutes)."""
    return (np.asarray(t, dtype=np.int64) + np.asarray(tz_min, dtype=np.int64) * MINUTE_MS) // DAY_MS


def day_sums(impl, batch: np.ndarray, tz_min: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The daily window sums of ``batch``'s readings.

    Parameters
    ----------
    impl
        ``core.compiled`` or ``core.reference`` (its ``WindowState``).
    batch : READING_DTYPE[n]
        Readings after the core (patients bound); only those a ``WindowState`` takes count
        (reason OK, bound, not ARTIFACT/CONTROL, BP/GLU/CGM with a value).
    tz_min : int16[n_patients], thresholds : float64[n_patients, N_PARAMS]
        Every patient's UTC offset (minutes) and thresholds (the glucose bins).

    Returns
    -------
    DAY_SUMS_DTYPE[m]
        One row per (patient, metric, local day) with readings, in no particular order.
        Rows are taken a block of RING_DAYS aligned days at a time, so that no two days of
        one fresh state share a slot: every reading counts, however old.
    """
    rows = batch[(batch["reason"] == Reason.OK) & (batch["patient"] >= 0)]
    patients, local = np.unique(rows["patient"], return_inverse=True)
    block = local_day(rows["t"], tz_min[rows["patient"]]) // RING_DAYS
    parts = []
    for b in np.unique(block).tolist():
        part = rows[block == b]
        part["patient"] = local[block == b]
        state = impl.WindowState(len(patients), tz_min[patients])
        state.update(part, thresholds[patients])
        sums = slot_sums(state.arrays()["acc"])
        sums["patient"] = patients[sums["patient"]]
        parts.append(sums)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=DAY_SUMS_DTYPE)


def slot_sums(acc: np.ndarray) -> np.ndarray:
    """DAY_SUMS_DTYPE rows of the used slots of a window state's ``acc`` (``WindowState.arrays``;
    patient = row // N_METRICS), in row and slot order."""
    row, slot = np.nonzero(acc[:, :, Acc.DAY] != EMPTY_DAY)
    sums = np.zeros(len(row), dtype=DAY_SUMS_DTYPE)
    sums["patient"] = row // N_METRICS
    sums["metric"] = row % N_METRICS
    sums["day"] = acc[row, slot, Acc.DAY]
    sums["acc"] = acc[row, slot, Acc.N:]
    return sums


def close_days(impl, patients: np.ndarray, days: np.ndarray, sums: np.ndarray, tz_min: np.ndarray,
               thresholds: np.ndarray) -> np.ndarray:
    """The window alerts (``WINDOW_ALERT_DTYPE``, registry patient indexes) of ``patients``
    (int32[k], distinct) whose local ``days`` (int32[k]) closed, from their stored daily
    ``sums`` (DAY_SUMS_DTYPE, of the RING_DAYS days ending with each patient's closed day);
    ``tz_min`` and ``thresholds`` of every patient, as ``day_sums``."""
    patients = np.asarray(patients, dtype=np.int32)
    order = np.argsort(patients)
    local = order[np.searchsorted(patients, sums["patient"], sorter=order)]
    acc = empty_slots(len(patients))
    row = local * N_METRICS + sums["metric"].astype(np.int64)
    slot = sums["day"].astype(np.int64) % RING_DAYS
    acc[row, slot, Acc.DAY] = sums["day"]
    acc[row, slot, Acc.N:] = sums["acc"]
    state = impl.WindowState.from_arrays(tz_min[patients], acc, adopt=True)
    alerts = state.close_days(np.arange(len(patients), dtype=np.int32), days, thresholds[patients])
    alerts["patient"] = patients[alerts["patient"]]
    return alerts
