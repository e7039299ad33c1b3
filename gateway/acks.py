"""What the gateway may tell each publisher it can purge: the highest contiguous sequence.

A device (reading maps' ``seq``) or hub (GATT messages' ``hseq``) keeps every reading until
the gateway's ack says it is stored or quarantined (DESIGN.md "End-to-end delivery"). The
ack is the highest N such that every sequence number from the publisher's first one seen
up to N has been committed: a gap (a message still in flight, or lost by a killed broker
and due to be re-sent) holds the ack back, so the device never purges what was not stored.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class ContiguousAcks:
    """Per publisher: the highest contiguous committed sequence number, and the ones above it."""

    def __init__(self, acked: dict[str, int] | None = None) -> None:
        """Start from the acks already sent (``publisher -> seq``, e.g. saved by the store)."""
        self._acked: dict[str, int] = dict(acked or {})
        self._above: dict[str, set[int]] = {}

    def commit(self, publisher: str, seqs: Iterable[int] | np.ndarray) -> int | None:
        """Record committed ``seqs`` of ``publisher``; return its new ack if it moved, else None.

        A publisher never acked before starts its run at its lowest sequence number in this
        first commit: the gateway cannot know of readings it never received."""
        seqs = np.unique(np.asarray(list(seqs) if not isinstance(seqs, np.ndarray) else seqs, dtype=np.int64))
        if not len(seqs):
            return None
        before = self._acked.get(publisher)
        acked = int(seqs[0]) - 1 if before is None else before
        fresh = seqs[seqs > acked]
        above = self._above.get(publisher)
        if not above and len(fresh) and fresh[0] == acked + 1 and fresh[-1] - fresh[0] + 1 == len(fresh):
            acked = int(fresh[-1])  # the common case: one gap-free run right after the ack
        else:
            above = self._above.setdefault(publisher, set())
            above.update(fresh.tolist())
            while acked + 1 in above:
                acked += 1
                above.discard(acked)
        self._acked[publisher] = acked
        return acked if acked != before else None

    def acked(self, publisher: str) -> int | None:
        """The last ack of ``publisher`` (None before its first commit)."""
        return self._acked.get(publisher)
