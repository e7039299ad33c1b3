"""Dedup: an open-addressing hash table of the keys of recently stored readings.

Key of a record (DESIGN.md "Dedup"), exact, never a lossy hash:

    (device, TAG_SEQ, seq)                 a measurement with a device sequence number
    (device, TAG_CONTEXT_SEQ, seq)         a glucose context record (shares its seq with
                                           its measurement, so it gets a tag of its own)
    (device, TAG_FINGERPRINT, fingerprint) anything else: the 64-bit content fingerprint

Each slot also keeps the content fingerprint and the measurement time of the record it
holds. A record whose key is present gets DUPLICATE when the fingerprints agree and
CONFLICT when they differ (same device and seq, other values); otherwise, if its reason is
OK, its key is inserted, so a later copy in the same batch is caught too. Only OK records
are looked up: a reading rejected for any other reason never enters the table.

The table grows (capacity doubles, load factor at most 1/2) before a batch that could
overflow it, can drop keys measured before a horizon (``prune``), and is rebuilt from the
store's keys after a restart (``from_keys``): the store's UNIQUE constraint is the source
of truth, this table the fast first line.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel
from .codes import Flag, Kind, Reason

TAG_EMPTY = 0
TAG_SEQ = 1
TAG_FINGERPRINT = 2
TAG_CONTEXT_SEQ = 3

KEY_DTYPE = np.dtype([("device", "<i4"), ("tag", "u1"), ("key", "<u8"), ("fingerprint", "<u8"), ("t", "<i8")])

MAX_LOAD = 0.5
MIN_CAPACITY = 1024

_OK, _DUPLICATE, _CONFLICT = int(Reason.OK), int(Reason.DUPLICATE), int(Reason.CONFLICT)
_HAS_SEQ = int(Flag.HAS_SEQ)
_CONTEXT = int(Kind.GLU_CONTEXT)


@kernel
def _mix(x):
    """splitmix64 finaliser: a uint64 -> a well-spread uint64."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@kernel
def _slot_of(s_device, s_tag, s_key, device, tag, key):
    """Index of the slot holding (device, tag, key), or of the empty slot where it belongs."""
    mask = np.uint64(s_tag.shape[0] - 1)
    h = _mix(key ^ _mix(np.uint64(device) * np.uint64(4) + np.uint64(tag)))
    i = h & mask
    while True:
        j = np.int64(i)
        if s_tag[j] == TAG_EMPTY or (s_tag[j] == tag and s_key[j] == key and s_device[j] == device):
            return j
        i = (i + np.uint64(1)) & mask


@kernel
def key_of(kind, flags, seq, fingerprint):
    """(tag, key) of one record."""
    if flags & _HAS_SEQ:
        return (TAG_CONTEXT_SEQ if kind == _CONTEXT else TAG_SEQ), np.uint64(seq)
    return TAG_FINGERPRINT, np.uint64(fingerprint)


@kernel
def _check_and_insert(s_device, s_tag, s_key, s_fp, s_t, count, device, kind, flags, seq, fingerprint, t, reason):
    for i in range(device.shape[0]):
        if reason[i] != _OK:
            continue
        tag, key = key_of(kind[i], flags[i], seq[i], fingerprint[i])
        j = _slot_of(s_device, s_tag, s_key, device[i], tag, key)
        if s_tag[j] != TAG_EMPTY:
            reason[i] = _DUPLICATE if s_fp[j] == fingerprint[i] else _CONFLICT
            continue
        s_device[j] = device[i]
        s_tag[j] = tag
        s_key[j] = key
        s_fp[j] = fingerprint[i]
        s_t[j] = t[i]
        count += 1
    return count


@kernel
def _rehash(src_device, src_tag, src_key, src_fp, src_t, keep_from_t, s_device, s_tag, s_key, s_fp, s_t):
    count = 0
    for i in range(src_tag.shape[0]):
        if src_tag[i] == TAG_EMPTY or src_t[i] < keep_from_t:
            continue
        j = _slot_of(s_device, s_tag, s_key, src_device[i], src_tag[i], src_key[i])
        if s_tag[j] != TAG_EMPTY:
            continue
        s_device[j] = src_device[i]
        s_tag[j] = src_tag[i]
        s_key[j] = src_key[i]
        s_fp[j] = src_fp[i]
        s_t[j] = src_t[i]
        count += 1
    return count


def _capacity_for(n_keys: int) -> int:
    capacity = MIN_CAPACITY
    while n_keys > capacity * MAX_LOAD:
        capacity *= 2
    return capacity


class DedupTable:
    """The dedup keys of stored readings (see the module docstring for the key)."""

    def __init__(self, capacity: int = MIN_CAPACITY) -> None:
        self._allocate(_capacity_for(int(capacity * MAX_LOAD)))
        self.count = 0

    def _allocate(self, capacity: int) -> None:
        self.s_device = np.zeros(capacity, dtype=np.int32)
        self.s_tag = np.zeros(capacity, dtype=np.uint8)
        self.s_key = np.zeros(capacity, dtype=np.uint64)
        self.s_fp = np.zeros(capacity, dtype=np.uint64)
        self.s_t = np.zeros(capacity, dtype=np.int64)

    def __len__(self) -> int:
        return self.count

    @property
    def capacity(self) -> int:
        return len(self.s_tag)

    def _rebuild(self, capacity: int, keep_from_t: int) -> None:
        old = (self.s_device, self.s_tag, self.s_key, self.s_fp, self.s_t)
        self._allocate(capacity)
        self.count = _rehash(*old, np.int64(keep_from_t), self.s_device, self.s_tag, self.s_key, self.s_fp, self.s_t)

    def check_and_insert(self, device: np.ndarray, kind: np.ndarray, flags: np.ndarray, seq: np.ndarray,
                         fingerprint: np.ndarray, t: np.ndarray, reason: np.ndarray) -> None:
        """Mark DUPLICATE / CONFLICT records and insert the keys of the other OK ones, in place.

        Columns of one batch (int32 device, uint8 kind, uint16 flags, uint32 seq, uint64
        fingerprint, int64 t in ms UTC, uint8 reason); ``reason`` is updated.
        """
        needed = self.count + len(device)
        if needed > self.capacity * MAX_LOAD:
            self._rebuild(_capacity_for(needed), np.iinfo(np.int64).min)
        self.count = _check_and_insert(self.s_device, self.s_tag, self.s_key, self.s_fp, self.s_t, self.count,
                                       device, kind, flags, seq, fingerprint, t, reason)

    def prune(self, keep_from_t: int) -> None:
        """Forget keys of readings measured before ``keep_from_t`` (ms UTC)."""
        self._rebuild(_capacity_for(self.count), keep_from_t)

    def keys(self) -> np.ndarray:
        """All keys as a structured array sorted by (device, tag, key): for the store and tests."""
        used = self.s_tag != TAG_EMPTY
        out = np.zeros(int(used.sum()), dtype=KEY_DTYPE)
        out["device"], out["tag"], out["key"] = self.s_device[used], self.s_tag[used], self.s_key[used]
        out["fingerprint"], out["t"] = self.s_fp[used], self.s_t[used]
        return np.sort(out, order=["device", "tag", "key"])

    @classmethod
    def from_keys(cls, keys: np.ndarray) -> "DedupTable":
        """Rebuild from KEY_DTYPE rows (e.g. the store's keys after a restart)."""
        table = cls(capacity=_capacity_for(len(keys)))
        table.count = _rehash(keys["device"].astype(np.int32), keys["tag"].astype(np.uint8),
                              keys["key"].astype(np.uint64), keys["fingerprint"].astype(np.uint64),
                              keys["t"].astype(np.int64), np.int64(np.iinfo(np.int64).min),
                              table.s_device, table.s_tag, table.s_key, table.s_fp, table.s_t)
        return table

