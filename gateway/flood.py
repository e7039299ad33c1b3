"""Flood detection: which publishers send far more messages than any device should.

The writer counts, per publisher (the device or hub id in the topic: the MQTT client that
sent the message), the messages and the readings (rows: elements of a message's array) of
every committed live batch in a sliding window of ``FloodSettings.window_s`` seconds, kept
as ``buckets`` numpy counters per publisher: per batch one ``np.unique`` over its messages'
publishers, no Python per message and no dict keyed by device. A publisher is **flooding**
while it sent more than ``msgs_per_s`` messages a second on average over the window; the
episode ends when its count falls to ``clear_fraction`` of that limit (checked as the window
slides, every ``window_s / buckets`` seconds), so a publisher hovering at the limit is one
episode, not many.

The rule counts messages, not readings. A message is what costs the broker and the gateway
per publish (a PUBLISH, its PUBACK, a queue slot, a device ack), while the readings in one
message are bounded by the contract (an array of up to 1,000 maps, 256 KiB): a hub's dump of
a meter's memory after a reconnect, or a device re-sending what was not acked, is one or a
few large messages, legitimately. A reading threshold would either flag every such dump or
miss a device sending thousands of one-reading messages. Readings are counted beside, to tell
a flood of dumps from a flood of single readings.

The default limit, one message a second over a minute, is far above any device that works:
a home meter sends a handful of messages a day, a CGM one every 1 to 5 minutes (and re-sends
what is not acked after a timeout, one message per timeout), a hub a few messages per dump.
It catches a CGM at 100 times its rate and anything faster. A gateway that was away for
hours receives each device's backlog in one burst when it returns, so a busy device may be
seen flooding for up to one window after a long outage: that is why the DEVICE task needs a
flood that lasted longer than one window (``sustained``), which a single burst never does
(it leaves the window ``window_s`` after it came).

Flooding is reported, never acted on: the offender's messages are stored (dedup handles
repeats) and acked like every other. The counters are not saved: after a restart a flood
still going on is seen again within one window.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

NOT_FLOODING = np.iinfo(np.int64).min  # ``since`` of a publisher not flooding


@dataclasses.dataclass(frozen=True)
class FloodSettings:
    """``msgs_per_s``: a publisher sending more messages than this a second, on average over
    the last ``window_s`` seconds, is flooding (default 1 msg/s: 60 messages a minute; the
    module docstring says why). The window is ``buckets`` counters of ``window_s / buckets``
    seconds each, so it covers between ``window_s * (1 - 1/buckets)`` and ``window_s``
    seconds. ``clear_fraction``: an episode ends when the count falls to this fraction of
    the limit. ``report_max``: the stats list at most this many flooding publishers."""

    msgs_per_s: float = 1.0
    window_s: float = 60.0
    buckets: int = 6
    clear_fraction: float = 0.5
    report_max: int = 10

    @property
    def limit(self) -> float:
        """Messages in one window above which a publisher is flooding."""
        return self.msgs_per_s * self.window_s

    @property
    def bucket_ms(self) -> int:
        return max(1, round(self.window_s * 1000 / self.buckets))


@dataclasses.dataclass(frozen=True)
class Episode:
    """A publisher's flood, started or ended: registry index, the window's counts when it
    was seen, and since when it floods (ms UTC)."""

    publisher: int
    msgs: int
    readings: int
    since: int


class FloodMeter:
    """Per publisher (registry index) message and reading counts over a sliding window, and
    the flood episodes they make (module docstring). Used by one thread, the writer.

    Arrays: ``msgs``, ``readings`` uint32[buckets, n] (the current bucket is ``_slot``),
    ``msgs_total``, ``readings_total`` int64[n] (sums over the buckets), ``since`` int64[n]
    (start of the publisher's episode, ``NOT_FLOODING`` when none).
    """

    def __init__(self, settings: FloodSettings = FloodSettings(), n: int = 0) -> None:
        self.settings = settings
        b = settings.buckets
        self.msgs = np.zeros((b, n), dtype=np.uint32)
        self.readings = np.zeros((b, n), dtype=np.uint32)
        self.msgs_total = np.zeros(n, dtype=np.int64)
        self.readings_total = np.zeros(n, dtype=np.int64)
        self.since = np.full(n, NOT_FLOODING, dtype=np.int64)
        self._bucket: int | None = None  # absolute number of the current bucket (ms // bucket_ms)
        self._ended: list[Episode] = []  # episodes ended as the window slid, not yet returned by update

    @property
    def n(self) -> int:
        return len(self.since)

    @property
    def _slot(self) -> int:
        return self._bucket % self.settings.buckets

    def _grow(self, n: int) -> None:
        """Room for publisher indexes < n (doubling: new publishers appear one batch at a time)."""
        if n <= self.n:
            return
        extra = max(n, 2 * self.n) - self.n
        self.msgs = np.concatenate([self.msgs, np.zeros((self.settings.buckets, extra), dtype=np.uint32)], axis=1)
        self.readings = np.concatenate([self.readings, np.zeros((self.settings.buckets, extra), dtype=np.uint32)],
                                       axis=1)
        self.msgs_total = np.concatenate([self.msgs_total, np.zeros(extra, dtype=np.int64)])
        self.readings_total = np.concatenate([self.readings_total, np.zeros(extra, dtype=np.int64)])
        self.since = np.concatenate([self.since, np.full(extra, NOT_FLOODING, dtype=np.int64)])

    def _advance(self, now_ms: int) -> None:
        """Slide the window to ``now_ms``: empty the buckets that left it, end the episodes
        whose count fell to the clearing level. A clock that went back keeps the window."""
        bucket = now_ms // self.settings.bucket_ms
        if self._bucket is None:
            self._bucket = bucket
            return
        steps = min(bucket - self._bucket, self.settings.buckets)
        if steps <= 0:
            return
        for step in range(1, steps + 1):
            slot = (self._bucket + step) % self.settings.buckets
            self.msgs_total -= self.msgs[slot]
            self.readings_total -= self.readings[slot]
            self.msgs[slot] = 0
            self.readings[slot] = 0
        self._bucket = bucket
        flooding = np.flatnonzero(self.since != NOT_FLOODING)
        cleared = flooding[self.msgs_total[flooding] <= self.settings.clear_fraction * self.settings.limit]
        self._ended += self._episodes(cleared)
        self.since[cleared] = NOT_FLOODING

    def update(self, publisher: np.ndarray, readings: np.ndarray, now_ms: int) -> tuple[list[Episode], list[Episode]]:
        """Count a committed batch at gateway time ``now_ms``: ``publisher`` int[m] the
        registry index of each message's publisher (negative: none, e.g. a bad topic),
        ``readings`` int[m] the rows each message gave. Returns the episodes that started
        with this batch and those that ended since the last call."""
        self._advance(now_ms)
        has = publisher >= 0
        devices, inverse = np.unique(publisher[has], return_inverse=True)
        started: list[Episode] = []
        if len(devices):
            self._grow(int(devices[-1]) + 1)
            msgs = np.bincount(inverse, minlength=len(devices))
            rows = np.bincount(inverse, weights=readings[has], minlength=len(devices)).astype(np.int64)
            slot = self._slot
            self.msgs[slot, devices] += msgs.astype(np.uint32)
            self.readings[slot, devices] += rows.astype(np.uint32)
            self.msgs_total[devices] += msgs
            self.readings_total[devices] += rows
            fresh = devices[(self.msgs_total[devices] > self.settings.limit) & (self.since[devices] == NOT_FLOODING)]
            self.since[fresh] = now_ms
            started = self._episodes(fresh)
        ended, self._ended = self._ended, []
        return started, ended

    def _episodes(self, publishers: np.ndarray) -> list[Episode]:
        return [Episode(p, m, r, s) for p, m, r, s in zip(publishers.tolist(), self.msgs_total[publishers].tolist(),
                                                          self.readings_total[publishers].tolist(),
                                                          self.since[publishers].tolist())]

    def flooding(self, now_ms: int) -> list[Episode]:
        """The publishers flooding at ``now_ms``, most messages first."""
        self._advance(now_ms)
        publishers = np.flatnonzero(self.since != NOT_FLOODING)
        order = np.argsort(-self.msgs_total[publishers], kind="stable")
        return self._episodes(publishers[order])

    def sustained(self, now_ms: int, n: int) -> np.ndarray:
        """bool[n]: publishers (indexes < n) flooding for longer than one window at
        ``now_ms`` (a single burst leaves the window sooner: module docstring)."""
        self._advance(now_ms)
        out = np.zeros(n, dtype=bool)
        m = min(n, self.n)
        since = self.since[:m]
        out[:m] = (since != NOT_FLOODING) & (since < now_ms - round(self.settings.window_s * 1000))
        return out

    def msgs_per_s(self, publisher: int) -> float:
        """The publisher's messages a second over the last window."""
        return float(self.msgs_total[publisher]) / self.settings.window_s if publisher < self.n else 0.0

    def report(self, now_ms: int, id_of: Callable[[int], str]) -> list[dict]:
        """The stats JSON's ``flooding``: at most ``report_max`` flooding publishers, most
        messages first, each ``{"device": id, "msgs_per_s", "readings_per_s" (over the last
        window), "since" (ms UTC)}``."""
        window = self.settings.window_s
        return [{"device": id_of(e.publisher), "msgs_per_s": round(e.msgs / window, 2),
                 "readings_per_s": round(e.readings / window, 2), "since": e.since}
                for e in self.flooding(now_ms)[:self.settings.report_max]]
