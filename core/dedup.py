"""Dedup: an open-addressing hash table of the keys of recently stored readings.

The key of a record, (device, tag, seq or fingerprint), is defined in ``core.dedup_keys``
and computed by ``key_of``. Each slot also keeps the content fingerprint and the
measurement time of the record it holds. A record whose key is present gets DUPLICATE when
the fingerprints agree and CONFLICT when they differ (same device and seq, other values);
otherwise, if its reason is OK, its key is inserted, so a later copy in the same batch is
caught too. Only OK records are looked up: a reading rejected for any other reason never
enters the table.

The table grows (capacity doubles, load factor at most 1/2) before a batch that could
overflow it, can drop keys measured before a horizon (``prune``), and is rebuilt from the
store's keys after a restart (``from_keys``): the store's UNIQUE constraint is the source
of truth, this table the fast first line.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel
from ._prefetch import PREFETCH_DISTANCE, prefetch
from .codes import Flag, Kind, Reason
from .dedup_keys import KEY_DTYPE, TAG_CONTEXT_SEQ, TAG_FINGERPRINT, TAG_SEQ

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


# A slot is four uint64 words, 32 bytes, so a probe touches one cache line:
#   ID   (device << 8) | tag   (0 = empty: tags start at 1)
#   KEY  seq or fingerprint
#   FP   content fingerprint of the stored record
#   T    its measurement time, ms UTC (int64 bits)
ID, KEY, FP, T = 0, 1, 2, 3
SLOT_WORDS = 4


@kernel
def _slot_id(device, tag):
    return (np.uint64(np.uint32(device)) << np.uint64(8)) | np.uint64(tag)


@kernel
def _home(slots, slot_id, key):
    """The slot where the probe for (slot_id, key) starts."""
    return _mix(key ^ _mix(slot_id)) & np.uint64(slots.shape[0] - 1)


@kernel
def _slot_of(slots, slot_id, key):
    """Index of the slot holding (slot_id, key), or of the empty slot where it belongs."""
    mask = np.uint64(slots.shape[0] - 1)
    i = _home(slots, slot_id, key)
    while True:
        j = np.int64(i)
        if slots[j, ID] == 0 or (slots[j, KEY] == key and slots[j, ID] == slot_id):
            return j
        i = (i + np.uint64(1)) & mask


@kernel
def key_of(kind, flags, seq, fingerprint):
    """(tag, key) of one record."""
    if flags & _HAS_SEQ:
        return (TAG_CONTEXT_SEQ if kind == _CONTEXT else TAG_SEQ), np.uint64(seq)
    return TAG_FINGERPRINT, np.uint64(fingerprint)


@kernel
def _store(slots, j, slot_id, key, fingerprint, t):
    slots[j, ID] = slot_id
    slots[j, KEY] = key
    slots[j, FP] = fingerprint
    slots[j, T] = np.uint64(t)


@kernel
def _check_and_insert(slots, count, device, kind, flags, seq, fingerprint, t, reason):
    n = device.shape[0]
    for i in range(n):
        ahead = i + PREFETCH_DISTANCE
        if ahead < n:
            tag, key = key_of(kind[ahead], flags[ahead], seq[ahead], fingerprint[ahead])
            prefetch(slots, _home(slots, _slot_id(device[ahead], tag), key))
        if reason[i] != _OK:
            continue
        tag, key = key_of(kind[i], flags[i], seq[i], fingerprint[i])
        slot_id = _slot_id(device[i], tag)
        j = _slot_of(slots, slot_id, key)
        if slots[j, ID] != 0:
            reason[i] = _DUPLICATE if slots[j, FP] == fingerprint[i] else _CONFLICT
            continue
        _store(slots, j, slot_id, key, fingerprint[i], t[i])
        count += 1
    return count


@kernel
def _rehash(source, keep_from_t, slots):
    count = 0
    n = source.shape[0]
    for i in range(n):
        ahead = i + PREFETCH_DISTANCE
        if ahead < n and source[ahead, ID] != 0:
            prefetch(slots, _home(slots, source[ahead, ID], source[ahead, KEY]))
        if source[i, ID] == 0 or np.int64(source[i, T]) < keep_from_t:
            continue
        j = _slot_of(slots, source[i, ID], source[i, KEY])
        if slots[j, ID] != 0:
            continue
        _store(slots, j, source[i, ID], source[i, KEY], source[i, FP], np.int64(source[i, T]))
        count += 1
    return count


def _capacity_for(n_keys: int) -> int:
    capacity = MIN_CAPACITY
    while n_keys > capacity * MAX_LOAD:
        capacity *= 2
    return capacity


def _slots_of_keys(keys: np.ndarray) -> np.ndarray:
    """KEY_DTYPE rows as slot words (unhashed), for ``_rehash``."""
    words = np.zeros((len(keys), SLOT_WORDS), dtype=np.uint64)
    words[:, ID] = (keys["device"].astype(np.uint32).astype(np.uint64) << np.uint64(8)) | keys["tag"]
    words[:, KEY], words[:, FP] = keys["key"], keys["fingerprint"]
    words[:, T] = keys["t"].astype(np.int64).view(np.uint64)
    return words


class DedupTable:
    """The dedup keys of stored readings (see the module docstring for the key)."""

    def __init__(self, capacity: int = 0) -> None:
        """An empty table sized for ``capacity`` keys (it grows beyond them as needed)."""
        self.slots = np.zeros((_capacity_for(capacity), SLOT_WORDS), dtype=np.uint64)
        self.count = 0

    def __len__(self) -> int:
        return self.count

    @property
    def capacity(self) -> int:
        return len(self.slots)

    def _rebuild(self, source: np.ndarray, capacity: int, keep_from_t: int) -> None:
        self.slots = np.zeros((capacity, SLOT_WORDS), dtype=np.uint64)
        self.count = _rehash(source, np.int64(keep_from_t), self.slots)

    def check_and_insert(self, device: np.ndarray, kind: np.ndarray, flags: np.ndarray, seq: np.ndarray,
                         fingerprint: np.ndarray, t: np.ndarray, reason: np.ndarray) -> None:
        """Mark DUPLICATE / CONFLICT records and insert the keys of the other OK ones, in place.

        Columns of one batch (int32 device, uint8 kind, uint16 flags, uint32 seq, uint64
        fingerprint, int64 t in ms UTC, uint8 reason); ``reason`` is updated.
        """
        needed = self.count + len(device)
        if needed > self.capacity * MAX_LOAD:
            self._rebuild(self.slots, _capacity_for(needed), np.iinfo(np.int64).min)
        self.count = _check_and_insert(self.slots, self.count, device, kind, flags, seq, fingerprint, t, reason)

    def prune(self, keep_from_t: int) -> None:
        """Forget keys of readings measured before ``keep_from_t`` (ms UTC)."""
        self._rebuild(self.slots, _capacity_for(self.count), keep_from_t)

    def keys(self) -> np.ndarray:
        """All keys as a structured array sorted by (device, tag, key): for the store and tests."""
        used = self.slots[self.slots[:, ID] != 0]
        out = np.zeros(len(used), dtype=KEY_DTYPE)
        out["device"] = (used[:, ID] >> np.uint64(8)).astype(np.uint32).view(np.int32)
        out["tag"] = used[:, ID] & np.uint64(0xFF)
        out["key"], out["fingerprint"] = used[:, KEY], used[:, FP]
        out["t"] = used[:, T].view(np.int64)
        return np.sort(out, order=["device", "tag", "key"])

    @classmethod
    def from_keys(cls, keys: np.ndarray) -> "DedupTable":
        """Rebuild from KEY_DTYPE rows (e.g. the store's keys after a restart)."""
        table = cls()
        table._rebuild(_slots_of_keys(keys), _capacity_for(len(keys)), np.iinfo(np.int64).min)
        return table
