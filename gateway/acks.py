"""What the gateway may tell each publisher it can purge: the highest contiguous sequence.

A device (reading maps' ``seq``) or hub (GATT messages' ``hseq``) keeps every reading until
the gateway's ack says it is stored or quarantined (DESIGN.md "End-to-end delivery"). The
ack is the highest N such that every sequence number from the publisher's first one seen
up to N has been committed: a gap (a message still in flight, or lost by a killed broker
and due to be re-sent) holds the ack back, so the device never purges what was not stored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import numpy as np


class ContiguousAcks:
    """Per publisher: the highest contiguous committed sequence number, and the ones above it."""

    def __init__(self, acked: dict[str, int] | None = None) -> None:
        """Start from the acks already sent (``publisher -> seq``, e.g. saved by the store)."""
        self._acked: dict[str, int] = dict(acked or {})
        self._above: dict[str, set[int]] = {}
        self._undo: dict[str, tuple[int | None, set[int] | None]] | None = None

    @contextlib.contextmanager
    def tentative(self) -> Iterator[None]:
        """Commits recorded inside the block are undone if it raises: wrap the acks of a
        batch together with the store's commit of that batch, so a refused commit leaves
        every publisher's ack where it was (the batch will be processed again)."""
        undo: dict[str, tuple[int | None, set[int] | None]] = {}
        self._undo = undo
        try:
            yield
        except BaseException:
            for publisher, (acked, above) in undo.items():
                if acked is None:
                    self._acked.pop(publisher, None)
                else:
                    self._acked[publisher] = acked
                if above is None:
                    self._above.pop(publisher, None)
                else:
                    self._above[publisher] = above
            raise
        finally:
            self._undo = None

    def commit(self, publisher: str, seqs: Iterable[int] | np.ndarray) -> int | None:
        """Record committed ``seqs`` of ``publisher``; return its new ack if it moved, else None.

        A publisher never acked before starts its run at its lowest sequence number in this
        first commit: the gateway cannot know of readings it never received."""
        seqs = np.unique(np.asarray(list(seqs) if not isinstance(seqs, np.ndarray) else seqs, dtype=np.int64))
        if not len(seqs):
            return None
        before = self._acked.get(publisher)
        if self._undo is not None and publisher not in self._undo:
            above = self._above.get(publisher)
            self._undo[publisher] = (before, None if above is None else set(above))
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

    def above(self, publisher: str) -> list[int]:
        """The sequence numbers of ``publisher`` committed above its ack (held by a gap), ascending."""
        return sorted(self._above.get(publisher, ()))
