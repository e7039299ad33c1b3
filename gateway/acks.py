"""What the gateway may tell each publisher it can purge: the highest contiguous sequence.

A device (reading maps' ``seq``) or hub (GATT messages' ``hseq``) keeps every reading until
the gateway's ack says it is stored or quarantined (DESIGN.md "End-to-end delivery"). The
ack is the highest N such that every sequence number from the publisher's first one seen
up to N has been committed: a gap (a message still in flight, or lost by a killed broker
and due to be re-sent) holds the ack back, so the device never purges what was not stored.
"""

from __future__ import annotations

from collections.abc import Iterable


class ContiguousAcks:
    """Per publisher: the highest contiguous committed sequence number, and the ones above it."""

    def __init__(self, acked: dict[str, int] | None = None) -> None:
        """Start from the acks already sent (``publisher -> seq``, e.g. saved by the store)."""
        self._acked: dict[str, int] = dict(acked or {})
        self._above: dict[str, set[int]] = {}

    def commit(self, publisher: str, seqs: Iterable[int]) -> int | None:
        """Record committed ``seqs`` of ``publisher``; return its new ack if it moved, else None.

        A publisher never acked before starts its run at its lowest sequence number in this
        first commit: the gateway cannot know of readings it never received."""
        seqs = set(seqs)
        if not seqs:
            return None
        before = self._acked.get(publisher)
        acked = min(seqs) - 1 if before is None else before
        above = self._above.setdefault(publisher, set())
        above.update(s for s in seqs if s > acked)
        while acked + 1 in above:
            acked += 1
            above.discard(acked)
        self._acked[publisher] = acked
        return acked if acked != before else None

    def acked(self, publisher: str) -> int | None:
        """The last ack of ``publisher`` (None before its first commit)."""
        return self._acked.get(publisher)
