"""Pure-Python twin of core/dedup.py: a dict from key to (fingerprint, t)."""

from __future__ import annotations

import numpy as np

from ..codes import Flag, Kind, Reason
from ..dedup_keys import KEY_DTYPE, TAG_CONTEXT_SEQ, TAG_FINGERPRINT, TAG_SEQ


def _key(device: int, kind: int, flags: int, seq: int, fingerprint: int) -> tuple[int, int, int]:
    if flags & Flag.HAS_SEQ:
        return device, (TAG_CONTEXT_SEQ if kind == Kind.GLU_CONTEXT else TAG_SEQ), seq
    return device, TAG_FINGERPRINT, fingerprint


class DedupTable:
    """The dedup keys of stored readings; same contract as core.dedup.DedupTable."""

    def __init__(self, capacity: int = 0) -> None:
        """An empty table; ``capacity`` is a sizing hint the dict has no use for."""
        self._stored: dict[tuple[int, int, int], tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._stored)

    def check_and_insert(self, device: np.ndarray, kind: np.ndarray, flags: np.ndarray, seq: np.ndarray,
                         fingerprint: np.ndarray, t: np.ndarray, reason: np.ndarray) -> None:
        """Mark DUPLICATE / CONFLICT records and remember the other OK ones, in place."""
        for i in range(len(device)):
            if reason[i] != Reason.OK:
                continue
            key = _key(int(device[i]), int(kind[i]), int(flags[i]), int(seq[i]), int(fingerprint[i]))
            if key in self._stored:
                same = self._stored[key][0] == int(fingerprint[i])
                reason[i] = Reason.DUPLICATE if same else Reason.CONFLICT
            else:
                self._stored[key] = (int(fingerprint[i]), int(t[i]))

    def prune(self, keep_from_t: int) -> None:
        """Forget keys of readings measured before ``keep_from_t`` (ms UTC)."""
        self._stored = {key: value for key, value in self._stored.items() if value[1] >= keep_from_t}

    def keys(self) -> np.ndarray:
        """All keys as KEY_DTYPE rows sorted by (device, tag, key)."""
        rows = sorted((key + value) for key, value in self._stored.items())
        return np.array(rows, dtype=KEY_DTYPE)

    @classmethod
    def from_keys(cls, keys: np.ndarray) -> "DedupTable":
        """Rebuild from KEY_DTYPE rows; the first row of a repeated key wins."""
        table = cls()
        for device, tag, key, fingerprint, t in keys.tolist():
            table._stored.setdefault((device, tag, key), (fingerprint, t))
        return table
