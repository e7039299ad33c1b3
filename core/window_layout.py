"""The layout of window state (``core.windows``): metrics, the daily slot, the ring, alerts.

Each (patient, metric) row of the state has a ring of ``RING_DAYS`` daily slots of ``N_ACC``
float64 accumulators (``Acc``); ``empty_slots`` makes the array, which the store persists
one row per patient and ``WindowState.from_arrays`` restores. Plain numpy: the store
imports this layout without the numba kernels.
"""

from __future__ import annotations

import enum

import numpy as np

from .codes import Kind


class Metric(enum.IntEnum):
    """Window metric; the state row of (patient, metric) is ``patient * N_METRICS + metric``."""

    BP = 0
    GLU = 1
    CGM = 2


class Acc(enum.IntEnum):
    """Columns of one daily slot, all float64 (day numbers and counts are exact integers).

    A slot is 8 columns = 64 bytes, one cache line: a reading touches one line of state.
    """

    DAY = 0  # local day the slot holds (days since 1970-01-01); EMPTY_DAY if never used
    N = 1  # readings that entered the slot (glucose: valued + censored)
    N_VALUED = 2  # of those, with a value (BP: all; glucose: not censored)
    SUM0 = 3  # sum of sys (BP, mmHg) or of glucose (mmol/L) over valued readings
    SUM1 = 4  # BP: sum of dia (mmHg); glucose: sum of glucose squared ((mmol/L)^2)
    N_BELOW_L2 = 5  # glucose < glu_low_l2, or censored LO
    N_BELOW = 6  # glucose < tir_low (below range), or censored LO
    N_IN = 7  # tir_low <= glucose <= tir_high; above range = N - N_BELOW - N_IN


# Which metric each reading kind feeds; other kinds have no window.
KIND_METRIC: dict[Kind, Metric] = {Kind.BP: Metric.BP, Kind.GLU: Metric.GLU, Kind.CGM: Metric.CGM}

N_METRICS = len(Metric)
N_ACC = len(Acc)
RING_DAYS = 16  # daily slots per (patient, metric); must cover the longest window
BP_WINDOW_DAYS = 7  # BP_HOME_HIGH: the closing day and the 6 before it
CGM_WINDOW_DAYS = 14  # CGM_TIR: the closing day and the 13 before it
DAY_MS = 86_400_000
MINUTE_MS = 60_000
EMPTY_DAY = -np.inf  # Acc.DAY of a slot that never held a day: older than every day
CACHE_LINE = 64  # bytes; the state array is aligned to it

# One row per window alert. values: BP_HOME_HIGH (mean sys mmHg, mean dia mmHg, readings,
# days used); CGM_TIR (TIR %, TBR %, CV %, sensor data %).
WINDOW_ALERT_DTYPE = np.dtype(
    [("patient", "<i4"), ("rule", "u1"), ("day", "<i4"), ("values", "<f8", (4,))], align=True
)

# One (patient, metric, local day)'s accumulators Acc.N .. Acc.N_IN, as gateways sharing a
# store add them up there (gateway.shared_windows); the day is the slot's Acc.DAY.
DAY_SUMS_DTYPE = np.dtype([("patient", "<i4"), ("metric", "u1"), ("day", "<i4"), ("acc", "<f8", (N_ACC - 1,))])


def empty_slots(n_patients: int) -> np.ndarray:
    """Unused daily slots for n patients, aligned so that each slot is one cache line.

    Returns
    -------
    float64[n_patients * N_METRICS, RING_DAYS, N_ACC]
    """
    size = n_patients * N_METRICS * RING_DAYS * N_ACC
    raw = np.zeros(size + CACHE_LINE // 8, dtype=np.float64)
    start = (-raw.ctypes.data % CACHE_LINE) // 8
    acc = raw[start : start + size].reshape(n_patients * N_METRICS, RING_DAYS, N_ACC)
    acc[:, :, Acc.DAY] = EMPTY_DAY
    return acc
