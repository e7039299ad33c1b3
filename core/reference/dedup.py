"""Pure-Python twin of core/dedup.py: a dict from key to (fingerprint, t), with the same
bound (``core.dedup_keys``: at most max_capacity // 2 keys, the oldest evicted below a
rising horizon) and the same ``recall`` of the stored keys it may not hold."""

from __future__ import annotations

import numpy as np

from ..codes import Flag, Kind, Reason
from ..dedup_keys import (EVICT_KEEP_PERCENT, KEY_DTYPE, MAX_CAPACITY, TAG_CONTEXT_SEQ, TAG_FINGERPRINT,
                         TAG_SEQ, Recall, check_max_capacity, stored_piece)

T_MIN, T_MAX = -(2**63), 2**63 - 1


def _key(device: int, kind: int, flags: int, seq: int, fingerprint: int) -> tuple[int, int, int]:
    if flags & Flag.HAS_SEQ:
        return device, (TAG_CONTEXT_SEQ if kind == Kind.GLU_CONTEXT else TAG_SEQ), seq
    return device, TAG_FINGERPRINT, fingerprint


class DedupTable:
    """The dedup keys of stored readings; same contract as core.dedup.DedupTable."""

    def __init__(self, capacity: int = 0, max_capacity: int = MAX_CAPACITY) -> None:
        """An empty table; ``capacity`` is a sizing hint the dict has no use for."""
        self.max_capacity = check_max_capacity(max_capacity)
        self.horizon = T_MIN
        self._stored: dict[tuple[int, int, int], tuple[int, int]] = {}
        self._evicted_seq: dict[int, int] = {}  # device -> highest seq (key) stored but not held

    def __len__(self) -> int:
        return len(self._stored)

    @property
    def max_keys(self) -> int:
        return self.max_capacity // 2

    @property
    def capacity(self) -> int:
        """A dict has no slots: the fewest (a power of two) that would hold its keys at load 1/2."""
        return 1 << max(1, 2 * len(self._stored) - 1).bit_length()

    def _reserve(self, n: int) -> None:
        """Past max_keys, forget the oldest keys: keep the newest, at most 3/4 of max_keys
        (EVICT_KEEP_PERCENT) or fewer if ``n`` needs the room."""
        if len(self._stored) + n <= self.max_keys:
            return
        keep = max(0, min(self.max_keys * EVICT_KEEP_PERCENT // 100, self.max_keys - n))
        if len(self._stored) > keep:
            times = sorted(t for _, t in self._stored.values())
            newest_evicted = times[len(times) - keep - 1]
            self.prune(min(newest_evicted + 1, T_MAX))

    def check_and_insert(self, device: np.ndarray, kind: np.ndarray, flags: np.ndarray, seq: np.ndarray,
                         fingerprint: np.ndarray, t: np.ndarray, reason: np.ndarray,
                         recall: Recall | None = None) -> None:
        """Mark DUPLICATE / CONFLICT records and remember the other OK ones, in place; OK
        records measured before the horizon are first looked up through ``recall``."""
        self._reserve(len(device))
        if recall is not None:
            old = [i for i in range(len(device)) if reason[i] == Reason.OK and self._unseen(
                int(device[i]), int(flags[i]), int(seq[i]), int(t[i]))]
            if old:
                keys = [_key(int(device[i]), int(kind[i]), int(flags[i]), int(seq[i]), int(fingerprint[i]))
                        for i in old]
                found = recall(np.array([k[0] for k in keys], dtype=np.int32),
                               np.array([k[1] for k in keys], dtype=np.uint8),
                               np.array([k[2] for k in keys], dtype=np.uint64))
                self._take(found)
        for i in range(len(device)):
            if reason[i] != Reason.OK:
                continue
            key = _key(int(device[i]), int(kind[i]), int(flags[i]), int(seq[i]), int(fingerprint[i]))
            if key in self._stored:
                same = self._stored[key][0] == int(fingerprint[i])
                reason[i] = Reason.DUPLICATE if same else Reason.CONFLICT
            else:
                self._stored[key] = (int(fingerprint[i]), int(t[i]))

    def _unseen(self, device: int, flags: int, seq: int, t: int) -> bool:
        """Whether a stored copy of this OK record may be missing from the dict."""
        return t < self.horizon or bool(flags & Flag.HAS_SEQ) and seq <= self._evicted_seq.get(device, -1)

    def add_evicted_seqs(self, device: np.ndarray, seq: np.ndarray) -> None:
        """Note stored seq keys the dict does not hold: device int32[k], highest seq int64[k]."""
        for d, s in zip(device.tolist(), seq.tolist()):
            self._evicted_seq[d] = max(self._evicted_seq.get(d, -1), s)

    def _take(self, keys: np.ndarray) -> None:
        for device, tag, key, fingerprint, t in keys.tolist():
            self._stored.setdefault((device, tag, key), (fingerprint, t))

    def add_stored(self, keys: np.ndarray) -> None:
        """Take KEY_DTYPE rows of stored readings, ``stored_piece`` rows at a time, making
        room for each first; the first row of a repeated key wins."""
        step = stored_piece(self.max_capacity)
        for start in range(0, len(keys), step):
            self._reserve(len(keys[start:start + step]))
            self._take(keys[start:start + step])

    def prune(self, keep_from_t: int) -> None:
        """Forget keys of readings measured before ``keep_from_t`` (ms UTC) or before the
        horizon; the horizon rises to it (if it is higher)."""
        self.horizon = max(self.horizon, keep_from_t)
        for (device, tag, key), (_, t) in self._stored.items():
            if t < self.horizon and tag != TAG_FINGERPRINT:
                self._evicted_seq[device] = max(self._evicted_seq.get(device, -1), key)
        self._stored = {key: value for key, value in self._stored.items() if value[1] >= self.horizon}

    def keys(self) -> np.ndarray:
        """All keys as KEY_DTYPE rows sorted by (device, tag, key)."""
        rows = sorted((key + value) for key, value in self._stored.items())
        return np.array(rows, dtype=KEY_DTYPE)

    @classmethod
    def from_keys(cls, keys: np.ndarray, max_capacity: int = MAX_CAPACITY) -> "DedupTable":
        """A table of KEY_DTYPE rows: ``add_stored``."""
        table = cls(len(keys), max_capacity)
        table.add_stored(keys)
        return table
