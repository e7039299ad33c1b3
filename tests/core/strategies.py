"""Hypothesis strategies for adversarial batches of readings (READING_DTYPE)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import core
from core.codes import NO_USER, Kind, Reason

NOW_MS = 1_764_072_000_000  # 2025-11-25T12:00:00Z
DAY_MS = 86_400_000

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0.0, max_value=350.0),
    st.sampled_from([0.5, 40.0, 20.0, 200.0, 300.0, 40.0, 250.0, 3.0, 3.9, 13.9, 180.0, 120.0, 90.0, float("nan")]),
)
times = st.one_of(
    st.integers(NOW_MS - 30 * DAY_MS, NOW_MS + 10 * 60_000),
    st.sampled_from([NOW_MS, NOW_MS + 5 * 60_000, NOW_MS + 5 * 60_000 + 1, NOW_MS - 400 * DAY_MS,
                     NOW_MS - 400 * DAY_MS - 1, 946_684_800_000, 1_420_070_400_000, 1_420_070_399_999, 0]),
    st.integers(-(2**63), 2**63 - 1),
)
records = st.fixed_dictionaries({
    "kind": st.sampled_from([int(k) for k in Kind] + [7]),
    "flags": st.integers(0, 0xFFFF),
    "t": times,
    "rx": st.integers(NOW_MS - 3 * DAY_MS, NOW_MS),
    "v": st.lists(values, min_size=4, max_size=4),
    "device": st.integers(0, 4),
    "seq": st.integers(0, 4),
    "fingerprint": st.integers(0, 3),
    "user": st.sampled_from([NO_USER, 0, 1, 2]),
    "reason": st.sampled_from([int(Reason.OK)] * 6 + [int(Reason.DECODE), int(Reason.SCHEMA)]),
})


@st.composite
def batches(draw, max_size: int = 60) -> np.ndarray:
    """A batch with duplicates, collisions, NaN/inf, out-of-order and clock-reset times."""
    rows = draw(st.lists(records, max_size=max_size))
    batch = core.empty_batch(len(rows))
    for i, row in enumerate(rows):
        for name, value in row.items():
            batch[name][i] = value
    return batch
