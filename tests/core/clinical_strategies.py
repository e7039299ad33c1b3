"""Hypothesis strategies for the rule and window tests: bound readings near every threshold.

Times cluster around a few local days (so windows fill up) but also reach far back, far
out, into the year 2000 (a meter whose clock was reset) and to the ends of int64; values sit
on and beside every threshold and include NaN and infinities; flags mix the ones rules and
windows look at with arbitrary bits.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import core
from core.codes import Flag, Kind, Reason
from core.rule_tables import N_PARAMS, Param, default_thresholds

DAY_MS = 86_400_000
BASE_MS = 1_764_028_800_000  # 2025-11-25T00:00:00Z
BASE_DAY = BASE_MS // DAY_MS
Y2000_MS = 946_684_800_000

special_floats = st.floats(allow_nan=True, allow_infinity=True)
bp_values = st.one_of(
    st.sampled_from([180.0, 179.99, 120.0, 119.99, 90.0, 89.99, 40.0, 39.99, 130.0, 130.01, 135.0, 85.0,
                     134.99, 84.99, float("nan")]),
    st.floats(20.0, 300.0),
    special_floats,
)
glucose_values = st.one_of(
    st.sampled_from([3.0, 2.99, 3.9, 3.89, 13.9, 13.91, 10.0, 10.01, 5.0, 4.99, 0.5, 40.0, float("nan")]),
    st.floats(0.5, 40.0),
    special_floats,
)
trends = st.one_of(st.just(float("nan")), st.sampled_from([-0.11, -0.12, -0.1, 0.0, -1e-9]), special_floats)
near_times = st.integers(BASE_MS - 3 * DAY_MS, BASE_MS + 3 * DAY_MS)
times = st.one_of(
    near_times,
    near_times,
    near_times,
    st.integers(BASE_MS - 25 * DAY_MS, BASE_MS + 25 * DAY_MS),
    st.integers(0, 40).map(lambda k: BASE_MS + k * 5 * 60_000),
    st.integers(Y2000_MS - DAY_MS, Y2000_MS + DAY_MS),
    st.sampled_from([0, -1, -(2**63), 2**63 - 1, BASE_MS - 1, BASE_MS]),
    st.integers(-(2**63), 2**63 - 1),
)
flag_bits = st.one_of(
    st.sampled_from([0, 0, 0, 0, 0, 0, Flag.RANGE_LO, Flag.RANGE_HI, Flag.ARTIFACT, Flag.CONTROL, Flag.LATE,
                     Flag.RANGE_LO | Flag.RANGE_HI, Flag.HAS_TIME | Flag.LATE]).map(int),
    st.integers(0, 0xFFFF),
)
kinds = st.sampled_from([Kind.BP, Kind.BP, Kind.GLU, Kind.CGM, Kind.CGM, Kind.GLU_CONTEXT, Kind.NONE, 9]).map(int)
reasons = st.sampled_from([Reason.OK] * 8 + [Reason.RANGE, Reason.DUPLICATE, Reason.UNBOUND]).map(int)


def make_batch(rows: list[tuple]) -> np.ndarray:
    """A batch from (patient, kind, t, v, flags) rows; reason OK."""
    batch = core.empty_batch(len(rows))
    for i, (patient, kind, t, v, flags) in enumerate(rows):
        batch["patient"][i], batch["kind"][i], batch["t"][i], batch["flags"][i] = patient, kind, t, flags
        batch["v"][i, : len(v)] = v
    return batch


@st.composite
def reading(draw, n_patients: int, time_pool: list[int]) -> dict:
    """One record's fields; times are drawn from a shared pool so duplicates happen."""
    kind = draw(kinds)
    if kind == Kind.BP:
        v = [draw(bp_values), draw(bp_values), float("nan"), draw(bp_values)]
    else:
        v = [draw(glucose_values), draw(trends), float("nan"), float("nan")]
    return {
        "patient": draw(st.integers(-1, n_patients - 1)),
        "kind": kind,
        "t": draw(st.sampled_from(time_pool)),
        "v": v,
        "flags": draw(flag_bits),
        "reason": draw(reasons),
    }


@st.composite
def batches(draw, n_patients: int, max_size: int = 40) -> np.ndarray:
    """A READING_DTYPE batch of bound (and some unbound) readings for n_patients."""
    time_pool = draw(st.lists(times, min_size=1, max_size=12))
    rows = draw(st.lists(reading(n_patients, time_pool), max_size=max_size))
    batch = core.empty_batch(len(rows))
    for i, row in enumerate(rows):
        for name, value in row.items():
            batch[name][i] = value
    return batch


@st.composite
def thresholds(draw, n_patients: int) -> np.ndarray:
    """Default thresholds, some patients with targets that make window rules reachable."""
    table = default_thresholds(n_patients)
    for p in range(n_patients):
        if draw(st.booleans()):
            table[p, Param.home_min_n] = draw(st.sampled_from([0.0, 1.0, 2.0, 12.0]))
            table[p, Param.cgm_readings_per_day] = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0, 288.0]))
        if draw(st.booleans()):
            column = draw(st.integers(0, N_PARAMS - 1))
            table[p, column] = draw(st.floats(allow_nan=True, allow_infinity=True))
    return table


tz_minutes = st.one_of(st.sampled_from([0, 180, -300, 330, 840, -720]), st.integers(-(2**15), 2**15 - 1))


@st.composite
def runs(draw, n_patients: int) -> np.ndarray:
    """Clean readings of one patient and kind over consecutive days, enough to fill windows."""
    kind = draw(st.sampled_from([Kind.BP, Kind.GLU, Kind.CGM]))
    n_days = draw(st.integers(1, 16))
    per_day = draw(st.integers(1, 6))
    first_day = BASE_DAY + draw(st.integers(-20, 3))
    if kind == Kind.BP:
        base = [draw(st.floats(60.0, 250.0)), draw(st.floats(40.0, 140.0)), float("nan"), draw(bp_values)]
        step = [draw(st.floats(-3.0, 3.0)), draw(st.floats(-2.0, 2.0)), 0.0, 0.0]
    else:
        base = [draw(st.floats(1.0, 20.0)), draw(trends), float("nan"), float("nan")]
        step = [draw(st.floats(-0.7, 0.7)), 0.0, 0.0, 0.0]
    batch = core.empty_batch(n_days * per_day)
    batch["patient"] = draw(st.integers(0, n_patients - 1))
    batch["kind"] = kind
    batch["flags"] = draw(st.sampled_from([0, int(Flag.LATE), int(Flag.HAS_TIME)]))
    jitter = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 3_600_000, len(batch))
    day, k = np.divmod(np.arange(len(batch)), per_day)
    batch["t"] = (first_day + day) * DAY_MS + k * 3 * 3_600_000 + jitter
    wobble = (np.arange(len(batch)) * 7) % 5 - 2
    batch["v"] = np.array(base) + np.outer(wobble, step)
    return batch


@st.composite
def mixed_batches(draw, n_patients: int) -> np.ndarray:
    """Runs of clean readings mixed with adversarial ones, in a drawn (often shuffled) order."""
    parts = draw(st.lists(runs(n_patients), max_size=3)) + [draw(batches(n_patients))]
    batch = np.concatenate(parts)
    if draw(st.booleans()):
        batch = batch[np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(len(batch))]
    return batch
