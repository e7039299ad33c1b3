"""Dedup: an open-addressing hash table of the keys of recently stored readings.

The key of a record, (device, tag, seq or fingerprint), is defined in ``core.dedup_keys``
and computed by ``key_of``. Each slot also keeps the content fingerprint and the
measurement time of the record it holds. A record whose key is present gets DUPLICATE when
the fingerprints agree and CONFLICT when they differ (same device and seq, other values);
otherwise, if its reason is OK, its key is inserted, so a later copy in the same batch is
caught too. Only OK records are looked up: a reading rejected for any other reason never
enters the table.

Bounded (``core.dedup_keys``): the table grows (capacity doubles, load factor at most 1/2)
up to ``max_capacity`` slots; past that, room for a batch is made by evicting the keys
measured longest ago: the table's ``horizon`` rises, and each device's highest evicted
sequence number is kept (``evicted_seq``, 8 bytes a device). Invariant, for a table filled
from the store (``add_stored``, ``add_evicted_seqs``) and fed every batch the store commits:
it holds the key of every stored reading measured at or after ``horizon`` and of every
stored seq above its device's ``evicted_seq``. A record outside both (measured before the
horizon, or a seq at or below its device's evicted one) cannot be decided by the table
alone: ``check_and_insert`` asks the caller's ``recall`` for the stored keys of such
records (``gateway.ingest`` looks them up in the store, one query a batch) and takes them
in first; then the table decides them exactly too. Evictions and ``prune`` work in place;
only growth allocates (the old and the new array: 1.5 x max_capacity slots at the last
doubling). The store's UNIQUE constraint stays the source of truth; this table is the
fast first line.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel
from ._prefetch import PREFETCH_DISTANCE, prefetch
from .codes import Flag, Kind, Reason
from .dedup_keys import (EVICT_KEEP_PERCENT, KEY_DTYPE, MAX_CAPACITY, TAG_CONTEXT_SEQ, TAG_FINGERPRINT, TAG_SEQ,
                         Recall, check_max_capacity, stored_piece)

MAX_LOAD = 0.5
MIN_CAPACITY = 1024
T_MIN, T_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)

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
def _rehash(source, slots):
    """Insert the keys of slot words ``source`` into ``slots``; a key held already keeps
    its slot. Returns the number inserted."""
    count = 0
    n = source.shape[0]
    for i in range(n):
        ahead = i + PREFETCH_DISTANCE
        if ahead < n and source[ahead, ID] != 0:
            prefetch(slots, _home(slots, source[ahead, ID], source[ahead, KEY]))
        if source[i, ID] == 0:
            continue
        j = _slot_of(slots, source[i, ID], source[i, KEY])
        if slots[j, ID] != 0:
            continue
        _store(slots, j, source[i, ID], source[i, KEY], source[i, FP], np.int64(source[i, T]))
        count += 1
    return count


@kernel
def _keys_of(kind, flags, seq, fingerprint, tag, key):
    """(tag, key) of each record, into ``tag`` uint8[n] and ``key`` uint64[n]."""
    for i in range(kind.shape[0]):
        tag[i], key[i] = key_of(kind[i], flags[i], seq[i], fingerprint[i])


@kernel
def _remove(slots, i):
    """Empty slot ``i``: later keys of its probe run move back into the hole when their
    probe passes it (linear probing without tombstones, Knuth's algorithm R)."""
    mask = slots.shape[0] - 1
    hole = i
    j = i
    while True:
        j = (j + 1) & mask
        if slots[j, ID] == 0:
            break
        home = np.int64(_home(slots, slots[j, ID], slots[j, KEY]))
        if (j - hole) & mask <= (j - home) & mask:  # the hole lies on the probe from home to j
            for w in range(SLOT_WORDS):
                slots[hole, w] = slots[j, w]
            hole = j
    for w in range(SLOT_WORDS):
        slots[hole, w] = 0


@kernel
def _evict(slots, horizon, evicted_seq):
    """Remove, in place, every key measured before ``horizon``; return how many. The
    sequence number of a seq key removed raises its device's ``evicted_seq``.

    A key moved back into slot i by ``_remove`` is examined again; keys only ever move
    into the hole being filled, so every key is examined at least once."""
    removed = 0
    for i in range(slots.shape[0]):
        while slots[i, ID] != 0 and np.int64(slots[i, T]) < horizon:
            if slots[i, ID] & np.uint64(0xFF) != TAG_FINGERPRINT:
                device = np.int64(slots[i, ID] >> np.uint64(8))
                evicted_seq[device] = max(evicted_seq[device], np.int64(slots[i, KEY]))
            _remove(slots, i)
            removed += 1
    return removed


@kernel
def _times(slots, out):
    """The measurement times of the held keys, into ``out`` (int64[count])."""
    k = 0
    for i in range(slots.shape[0]):
        if slots[i, ID] != 0:
            out[k] = np.int64(slots[i, T])
            k += 1


def _capacity_for(n_keys: int, max_capacity: int) -> int:
    """Slots for ``n_keys`` at load 1/2: a power of two from MIN_CAPACITY (or max_capacity,
    if smaller) up; past max_capacity only for more keys than it can hold."""
    capacity = min(MIN_CAPACITY, max_capacity)
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
    """The dedup keys of stored readings (see the module docstring for the key and the bound)."""

    def __init__(self, capacity: int = 0, max_capacity: int = MAX_CAPACITY) -> None:
        """An empty table sized for ``capacity`` keys (it grows as needed, up to
        ``max_capacity`` slots: a power of two, 32 bytes each; see ``_reserve``)."""
        self.max_capacity = check_max_capacity(max_capacity)
        self.slots = np.zeros((_capacity_for(min(capacity, self.max_keys), max_capacity), SLOT_WORDS),
                              dtype=np.uint64)
        self.count = 0
        self.horizon = T_MIN  # ms UTC: keys measured before it may be gone (module docstring)
        # int64[devices]: each device's highest sequence number (seq or context-seq key)
        # that may be stored but is not held (evicted, or never loaded); -1 none.
        self.evicted_seq = np.full(0, -1, dtype=np.int64)

    def __len__(self) -> int:
        return self.count

    @property
    def capacity(self) -> int:
        """Slots now (at most max_capacity, unless one batch alone needed more)."""
        return len(self.slots)

    @property
    def max_keys(self) -> int:
        """Keys the table holds at most: half its max_capacity."""
        return int(self.max_capacity * MAX_LOAD)

    def _rebuild(self, capacity: int) -> None:
        source = self.slots
        self.slots = np.zeros((capacity, SLOT_WORDS), dtype=np.uint64)
        self.count = _rehash(source, self.slots)

    def _reserve(self, n: int) -> None:
        """Make room for ``n`` more keys: grow, and past max_keys evict the keys measured
        longest ago, keeping at most EVICT_KEEP_PERCENT % of max_keys (fewer if ``n``
        needs it; none if ``n`` alone exceeds max_keys: then the table grows past
        max_capacity for that batch, and shrinks back at the next eviction)."""
        if self.count + n > self.max_keys:
            keep = max(0, min(self.max_keys * EVICT_KEEP_PERCENT // 100, self.max_keys - n))
            if self.count > keep:
                times = np.empty(self.count, dtype=np.int64)
                _times(self.slots, times)
                cut = self.count - keep - 1  # the newest key evicted, in ascending order of time
                times.partition(cut)
                self._raise_horizon(min(int(times[cut]) + 1, T_MAX))
        needed = _capacity_for(self.count + n, self.max_capacity)
        if needed > self.capacity or (self.capacity > self.max_capacity and needed < self.capacity):
            self._rebuild(needed)

    def _raise_horizon(self, horizon: int) -> None:
        """Raise the horizon to ``horizon`` (if higher) and drop every key measured before
        it (keys taken in below it since, by a recall, too)."""
        self.horizon = max(self.horizon, horizon)
        self.count -= _evict(self.slots, np.int64(self.horizon), self.evicted_seq)

    def _cover(self, device: np.ndarray) -> None:
        """Make ``evicted_seq`` long enough for the device indexes of ``device``."""
        if len(device) and int(device.max()) >= len(self.evicted_seq):
            grown = np.full(int(device.max()) + 1, -1, dtype=np.int64)
            grown[:len(self.evicted_seq)] = self.evicted_seq
            self.evicted_seq = grown

    def add_evicted_seqs(self, device: np.ndarray, seq: np.ndarray) -> None:
        """Note stored seq keys the table does not hold (at a start: those measured before
        the horizon it was filled from): device int32[k], highest seq int64[k]."""
        self._cover(device)
        np.maximum.at(self.evicted_seq, device, seq)

    def _unseen(self, device: np.ndarray, flags: np.ndarray, seq: np.ndarray, t: np.ndarray,
                reason: np.ndarray) -> np.ndarray:
        """OK records whose stored copy the table may not hold: measured before the horizon,
        or with a sequence number at or below one evicted of their device."""
        unseen = (reason == _OK) & (t < self.horizon)
        if (self.evicted_seq >= 0).any():
            known = (device >= 0) & (device < len(self.evicted_seq))
            highest = np.where(known, self.evicted_seq[np.where(known, device, 0)], -1)
            unseen |= (reason == _OK) & ((flags & _HAS_SEQ) != 0) & (seq.astype(np.int64) <= highest)
        return np.flatnonzero(unseen)

    def check_and_insert(self, device: np.ndarray, kind: np.ndarray, flags: np.ndarray, seq: np.ndarray,
                         fingerprint: np.ndarray, t: np.ndarray, reason: np.ndarray,
                         recall: Recall | None = None) -> None:
        """Mark DUPLICATE / CONFLICT records and insert the keys of the other OK ones, in place.

        Columns of one batch (int32 device, uint8 kind, uint16 flags, uint32 seq, uint64
        fingerprint, int64 t in ms UTC, uint8 reason); ``reason`` is updated.

        Room for the batch's keys is made first (which may raise the horizon). Then, if
        OK records may have a stored copy the table does not hold (measured before the
        horizon, or a sequence number at or below one evicted of their device),
        ``recall(device int32[k], tag uint8[k], key uint64[k])`` is called once with their
        keys (in batch order) and must return the KEY_DTYPE rows of those the store holds;
        they are taken into the table, so those records are decided exactly. Without
        ``recall`` they are decided by the table alone (a stored key evicted is not seen).

        Not covered: a copy keyed by fingerprint whose time differs from the stored one
        (a GATT record relayed again with another time zone, CGM session start or hub
        receive time: not in its fingerprint) when the stored copy was evicted and the new
        time is not before the horizon. The store's UNIQUE key still finds it DUPLICATE.
        """
        self._reserve(len(device))
        self._cover(device)
        if recall is not None:
            old = self._unseen(device, flags, seq, t, reason)
            if len(old):
                tag, key = np.empty(len(old), dtype=np.uint8), np.empty(len(old), dtype=np.uint64)
                _keys_of(kind[old], flags[old], seq[old], fingerprint[old], tag, key)
                # Room is made: a key recalled is one of the batch's, which adds no other.
                self.count += _rehash(_slots_of_keys(recall(device[old], tag, key)), self.slots)
        self.count = _check_and_insert(self.slots, self.count, device, kind, flags, seq, fingerprint, t, reason)

    def add_stored(self, keys: np.ndarray) -> None:
        """Take KEY_DTYPE rows of stored readings (e.g. the store's, at a start), a piece
        at a time (``stored_piece``), making room for each first: a row is held, whatever
        its time, unless the room for a later piece evicts it; a key held already keeps its
        first row. The table stays within its bound however many rows come."""
        self._cover(keys["device"])
        step = stored_piece(self.max_capacity)
        for start in range(0, len(keys), step):
            self._reserve(len(keys[start:start + step]))
            self.count += _rehash(_slots_of_keys(keys[start:start + step]), self.slots)

    def prune(self, keep_from_t: int) -> None:
        """Forget keys of readings measured before ``keep_from_t`` (ms UTC) or before the
        horizon: the horizon rises to it (if it is higher)."""
        self._raise_horizon(keep_from_t)

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
    def from_keys(cls, keys: np.ndarray, max_capacity: int = MAX_CAPACITY) -> "DedupTable":
        """A table of KEY_DTYPE rows (e.g. the store's keys after a restart): ``add_stored``."""
        table = cls(len(keys), max_capacity)
        table.add_stored(keys)
        return table
