"""Whether the store takes the gateway's writes, told once per episode, not once per retry.

An episode starts with the first write the store refuses (a batch, the stats, the window
save, day close, a sweep, escalation, a replay: the writer's jobs) and ends when every job
it refused has run again without a refusal. The log gets one ERROR line when it starts (the
reason code, the store's message: for DISK_FULL the database and the free bytes on its
disk) and one more only if the reason changes, then one INFO line when it ends (how long,
how many refusals); the stats carry the episode (``fault``) while it lasts, in the retained
stats message, which needs no disk. Times: ``since_ms`` ms UTC, durations in seconds.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from .clock import now_ms
from .store import Store, StoreError
from .store.store import LOW_DISK_BYTES

log = logging.getLogger("pmpgw")


@dataclasses.dataclass
class Episode:
    """One stretch of refused writes: the latest reason and message, since when, how many
    refusals, the jobs refused and not run cleanly since, the free bytes at the last refusal."""

    reason: str
    message: str
    since_ms: int
    started_s: float  # time.monotonic() at the first refusal
    refusals: int = 0
    jobs: set[str] = dataclasses.field(default_factory=set)
    free_bytes: int | None = None


class StoreHealth:
    """The current episode of refused writes of one gateway's store (None while it takes them)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.episode: Episode | None = None

    def refused(self, job: str, error: StoreError) -> None:
        """``job`` was refused with ``error``: start the episode (logged) or count it in."""
        episode = self.episode
        free = self.store.disk_free_bytes()
        if episode is None:
            episode = self.episode = Episode(error.reason, str(error), now_ms(), time.monotonic())
            log.error("store refuses writes: %s: %s [first refused: %s; batches stay un-acked and are retried; "
                      "logged again when it accepts writes]", error.reason, error, job)
        elif error.reason != episode.reason:
            log.error("store refuses writes, now: %s: %s [%s; %d refusals since %.0f s]", error.reason, error, job,
                      episode.refusals, time.monotonic() - episode.started_s)
        episode.reason, episode.message, episode.free_bytes = error.reason, str(error), free
        episode.refusals += 1
        episode.jobs.add(job)

    def ok(self, job: str) -> None:
        """``job`` ran without a refusal; the episode ends (logged) once no refused job is left."""
        episode = self.episode
        if episode is None:
            return
        episode.jobs.discard(job)
        if not episode.jobs:
            self.episode = None
            log.info("store accepts writes again after %.1f s (%s: %d refusals)",
                     time.monotonic() - episode.started_s, episode.reason, episode.refusals)

    @property
    def last_error(self) -> str:
        """``"REASON: message"`` of the latest refusal of the episode, "" when there is none."""
        return "" if self.episode is None else f"{self.episode.reason}: {self.episode.message}"

    def space_returned(self) -> bool:
        """A DISK_FULL episode whose disk gained ``LOW_DISK_BYTES`` since the last refusal:
        worth retrying now rather than after the backoff (a statvfs, no database I/O)."""
        episode = self.episode
        if episode is None or episode.reason != "DISK_FULL" or episode.free_bytes is None:
            return False
        free = self.store.disk_free_bytes()
        return free is not None and free >= episode.free_bytes + LOW_DISK_BYTES

    def fault(self, held_messages: int) -> dict | None:
        """The episode for the stats JSON (None when there is none): reason, message,
        ``since`` (ms UTC), ``for_s``, ``refusals``, ``jobs`` (refused, not run cleanly
        since), ``held_messages`` (received, not acked: waiting for the store), the
        database ``path`` and ``free_bytes`` on its disk now."""
        episode = self.episode
        if episode is None:
            return None
        return {"reason": episode.reason, "message": episode.message, "since": episode.since_ms,
                "for_s": round(time.monotonic() - episode.started_s, 1), "refusals": episode.refusals,
                "jobs": sorted(episode.jobs), "held_messages": held_messages, "path": self.store.path,
                "free_bytes": self.store.disk_free_bytes()}
