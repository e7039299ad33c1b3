"""The dedup key of a record (DESIGN.md "Dedup"), exact, never a lossy hash:

    (device, TAG_SEQ, seq)                 a measurement with a device sequence number
    (device, TAG_CONTEXT_SEQ, seq)         a glucose context record (shares its seq with
                                           its measurement, so it gets a tag of its own)
    (device, TAG_FINGERPRINT, fingerprint) anything else: the 64-bit content fingerprint

``KEY_DTYPE`` rows are the keys as the store keeps them and ``core.dedup.DedupTable`` is
rebuilt from (with the content fingerprint and measurement time of each). Plain numpy: the
store imports them without the numba kernels.

The table's bounds, one policy for ``core.dedup.DedupTable`` and its twin: at most
``max_capacity`` slots (a power of two; ``MAX_CAPACITY`` by default), filled to at most
half, so at most ``max_capacity // 2`` keys. When a batch would take it past that, the keys
measured longest ago go: the table's horizon rises and keys measured before it are dropped,
down to ``EVICT_KEEP_PERCENT`` percent of the maximum (less the room the batch needs), so
that evictions are rare, not one a batch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

TAG_SEQ = 1
TAG_FINGERPRINT = 2
TAG_CONTEXT_SEQ = 3

# Slots of the compiled table at most: 2**23 slots of 32 bytes = 256 MiB, up to 4,194,304
# keys: a week of readings of a region of 200,000 patients measuring three times a day.
MAX_CAPACITY = 1 << 23
EVICT_KEEP_PERCENT = 75  # an eviction keeps at most this share of the maximum number of keys


def stored_piece(max_capacity: int) -> int:
    """Rows of stored keys a table takes at a time (``add_stored``): the room an eviction
    leaves, so that filling a table never takes it past its bound."""
    return max(1, max_capacity // 2 * (100 - EVICT_KEEP_PERCENT) // 100)


def check_max_capacity(max_capacity: int) -> int:
    """``max_capacity`` if it is a power of two of at least 2 slots; else ValueError."""
    if max_capacity < 2 or max_capacity & (max_capacity - 1):
        raise ValueError(f"CAPACITY: the dedup table's max_capacity must be a power of two >= 2 slots, "
                         f"not {max_capacity!r}")
    return max_capacity


KEY_DTYPE = np.dtype([("device", "<i4"), ("tag", "u1"), ("key", "<u8"), ("fingerprint", "<u8"), ("t", "<i8")])

# The lookup of stored keys a dedup table asks its caller for (``check_and_insert``): the
# device int32[k], tag uint8[k] and key uint64[k] of records measured before its horizon
# -> the KEY_DTYPE rows of those the store holds.
Recall = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
