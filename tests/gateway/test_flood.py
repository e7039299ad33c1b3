"""Flood detection: the vectorised meter against a plain per-message twin, its limits, and the
report through Ingest (stats, a log line per episode, the DEVICE task) on a real SQLite file.
The flood end to end on a real broker: tests/faults/test_flood.py."""

from __future__ import annotations

import collections
import json
import logging
import random

import msgpack
import numpy as np
import pytest

from adapters.mqtt import Received
from core.rule_tables import Rule
from gateway import status_cli
from gateway.clock import now_ms
from gateway.flood import NOT_FLOODING, FloodMeter, FloodSettings
from gateway.ingest import Ingest
from gateway.store import Store
from gateway.sweeps import RESOLVED_NOTES

NOW = now_ms()
T0 = 1_764_072_000_000  # a fixed clock, on a bucket boundary of the settings below
SETTINGS = FloodSettings(msgs_per_s=2.0, window_s=10.0, buckets=5)  # limit 20 messages in 10 s, 2 s buckets


class PlainMeter:
    """The meter's rule stated per message: counts per (publisher, bucket number), the
    window the last ``buckets`` bucket numbers, episodes started and ended as the docstring
    of gateway.flood says."""

    def __init__(self, settings: FloodSettings) -> None:
        self.s = settings
        self.counts: dict[tuple[int, int], list[int]] = collections.defaultdict(lambda: [0, 0])
        self.bucket: int | None = None
        self.since: dict[int, int] = {}
        self.ended: list[tuple[int, int, int, int]] = []

    def window(self, p: int) -> tuple[int, int]:
        buckets = range(self.bucket - self.s.buckets + 1, self.bucket + 1)
        return (sum(self.counts[(p, b)][0] for b in buckets if (p, b) in self.counts),
                sum(self.counts[(p, b)][1] for b in buckets if (p, b) in self.counts))

    def advance(self, now: int) -> None:
        bucket = now // self.s.bucket_ms
        if self.bucket is None or bucket <= self.bucket:
            self.bucket = bucket if self.bucket is None else self.bucket
            return
        self.bucket = bucket
        for p in sorted(self.since):
            msgs, readings = self.window(p)
            if msgs <= self.s.clear_fraction * self.s.limit:
                self.ended.append((p, msgs, readings, self.since.pop(p)))

    def update(self, messages: list[tuple[int, int]], now: int):
        self.advance(now)
        for p, rows in messages:
            if p >= 0:
                self.counts[(p, self.bucket)][0] += 1
                self.counts[(p, self.bucket)][1] += rows
        started = []
        for p in sorted({p for p, _ in messages if p >= 0}):
            msgs, readings = self.window(p)
            if msgs > self.s.limit and p not in self.since:
                self.since[p] = now
                started.append((p, msgs, readings, now))
        ended, self.ended = self.ended, []
        return started, ended


def as_tuples(episodes):
    return [(e.publisher, e.msgs, e.readings, e.since) for e in episodes]


def test_the_meter_counts_and_flags_as_its_plain_twin():
    rng = random.Random(7)
    meter, twin = FloodMeter(SETTINGS), PlainMeter(SETTINGS)
    now, episodes = T0, collections.Counter()
    for _ in range(400):
        now += rng.choice((0, 50, 300, 900, 2_500))
        rate = rng.choice((0.2, 1.0, 4.0))  # how many messages of the flooder this batch
        batch = [(rng.randrange(-1, 6), rng.randrange(1, 30)) for _ in range(rng.randrange(0, 8))]
        batch += [(3, 1)] * int(rate * rng.randrange(0, 4))
        publisher = np.array([p for p, _ in batch], dtype=np.int64)
        rows = np.array([r for _, r in batch], dtype=np.int64)
        started, ended = meter.update(publisher, rows, now)
        assert (as_tuples(started), as_tuples(ended)) == twin.update(batch, now)
        episodes.update(started=len(started), ended=len(ended))
        for p in range(meter.n):
            assert (int(meter.msgs_total[p]), int(meter.readings_total[p])) == twin.window(p)
            assert meter.since[p] == twin.since.get(p, NOT_FLOODING)
    assert episodes["started"] >= 5 and episodes["ended"] >= 5, episodes  # floods came and went


def test_more_than_the_limit_starts_one_episode_and_the_window_sliding_past_ends_it():
    meter = FloodMeter(SETTINGS)
    one = np.array([4], dtype=np.int64)  # publisher 4; as readings: a message of 4
    for i in range(20):  # exactly the limit: not flooding
        assert meter.update(one, one, T0 + i) == ([], [])
    started, _ = meter.update(one, np.array([7]), T0 + 100)
    assert as_tuples(started) == [(4, 21, 87, T0 + 100)]
    assert meter.update(np.array([4, 4, 4]), np.ones(3, dtype=np.int64), T0 + 200) == ([], [])  # once per episode
    assert meter.report(T0 + 300, lambda i: f"dev-{i}") == [
        {"device": "dev-4", "msgs_per_s": 2.4, "readings_per_s": 9.0, "since": T0 + 100}]
    assert not meter.sustained(T0 + 9_999, 5).any()  # not for longer than one window
    assert meter.update(one, one, T0 + 9_999) == ([], [])  # the count stays up until the window slides
    started, ended = meter.update(np.array([-1, 2]), np.array([1, 1]), T0 + 10_000)  # the first bucket left
    assert started == [] and as_tuples(ended) == [(4, 1, 4, T0 + 100)]  # one message of 4 readings left
    assert meter.flooding(T0 + 10_000) == [] and not meter.sustained(T0 + 20_000, 5).any()


def test_a_flood_is_sustained_only_after_one_window_and_an_idle_meter_forgets_it():
    meter = FloodMeter(SETTINGS)
    t = T0
    while t < T0 + 25_000:  # 5 messages a second for 25 s
        meter.update(np.full(5, 1, dtype=np.int64), np.ones(5, dtype=np.int64), t)
        t += 1_000
    since = T0 + 4_000  # its 5th batch brings the window to 25 messages
    assert meter.since[1] == since
    assert meter.sustained(since + 10_000, 3).tolist() == [False, False, False]
    assert meter.sustained(since + 10_001, 3).tolist() == [False, True, False]
    assert meter.sustained(T0 + 10 ** 6, 3).tolist() == [False] * 3  # the window emptied
    assert meter.msgs_per_s(1) == 0.0 and meter.msgs_per_s(99) == 0.0


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "pmp.db") as opened:
        opened.add_patient("P1", tz="UTC")
        opened.add_patient("P2", tz="UTC")
        for device, patient in (("tono-1", "P1"), ("tono-2", "P2")):
            opened.add_device(device, "bp")
            opened.bind(device, patient, NOW - 7_200_000)  # not silent before it sends
        yield opened


def messages(device, seqs, at, per_message=1):
    """One message per ``per_message`` readings of ``device`` (seq s measured at NOW - 1 h + s s)."""
    maps = [{"seq": s, "t": NOW - 3_600_000 + s * 1_000, "type": "bp", "sys": 120, "dia": 80} for s in seqs]
    return [Received(f"pmp/v1/dev/{device}/m", msgpack.packb(maps[i:i + per_message]), i, 1, 1, at)
            for i in range(0, len(maps), per_message)]


def test_a_flooding_device_is_reported_logged_once_tasked_and_its_readings_kept(store, caplog):
    ingest = Ingest(store, flood=SETTINGS)
    caplog.set_level(logging.INFO, logger="pmpgw")
    acks = []
    for second in range(15):  # tono-1: 10 messages a second (5x the limit); tono-2: one, with a dump
        at = NOW + second * 1_000
        batch = messages("tono-1", range(10 * second, 10 * second + 10), at)
        if second % 5 == 0:
            batch += messages("tono-2", range(50 * second, 50 * second + 50), at, per_message=50)
        acks += ingest.process(batch, at).publications
    counters = store.counters()
    assert (counters["stored"], counters["quarantined"]) == (150 + 150, {})  # nothing refused
    assert acks[-1] == ("pmp/v1/dev/tono-1/ack", b'{"seq": 149}')
    (report,) = ingest.flooding(NOW + 14_000)
    assert (report["device"], report["since"]) == ("tono-1", NOW + 2_000)  # its 3rd batch: 30 in the window
    assert report["msgs_per_s"] >= 8.0 and report["readings_per_s"] == report["msgs_per_s"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("flood: tono-1 sent 30 messages (30 readings)")

    (task,) = [json.loads(p) for _, p in ingest.sweep(NOW + 14_000)]  # flooding for 12 s > the 10 s window
    assert (task["patient"], task["rule"], task["values"]["devices"]) == ("P1", "DEVICE", {"tono-1": ["flood"]})
    assert task["values"]["figures"]["tono-1"]["msgs_per_s"] == report["msgs_per_s"]
    assert ingest.sweep(NOW + 15_000) == []

    ingest.process(messages("tono-2", [1_000], NOW + 40_000), NOW + 40_000)  # tono-1 went quiet
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO][-1].startswith(
        "flood: tono-1 stopped flooding")
    assert ingest.flooding(NOW + 40_000) == [] and ingest.sweep(NOW + 40_000) == []
    (alert,) = store.alerts(patient="P1")
    assert alert["state"] == "resolved"
    assert store.alert_events(alert["id"])[-1]["note"] == RESOLVED_NOTES[Rule.DEVICE, True]
    assert store.alerts(patient="P2") == []


def test_a_burst_raises_no_task_and_hubs_count_by_their_own_id(store):
    ingest = Ingest(store, flood=SETTINGS)
    ingest.process(messages("tono-1", range(100), NOW), NOW)  # a backlog re-sent at once: 100 messages
    hub = [Received("pmp/v1/hub/hub-1/gatt", msgpack.packb([]), 200 + i, 1, 1, NOW) for i in range(30)]
    ingest.process(hub, NOW)
    assert [f["device"] for f in ingest.flooding(NOW + 1_000)] == ["tono-1", "hub-1"]
    for second in range(1, 30):  # the burst leaves the window; a sweep every second raises nothing
        assert ingest.sweep(NOW + second * 1_000) == []
    assert ingest.flooding(NOW + 30_000) == []


def test_status_shows_the_flooding_devices(tmp_path):
    path = tmp_path / "pmp.db"
    flooding = [{"device": "tono-7", "msgs_per_s": 98.4, "readings_per_s": 213.0, "since": NOW - 125_000}]
    with Store.open(path) as store:
        store.save_gateway_stats({**status_cli.NO_GATEWAY_STATS, "gw": "gw1", "state": "up", "readings": {},
                                  "alerts_open": {}, "db_bytes": 0, "flooding": flooding})
        stats = status_cli.collect(store, str(path))
    assert stats["flooding"] == []  # a gateway that is not up floods nobody now
    up = {**stats, "flooding": flooding}
    assert "flooding  tono-7 98.4 msg/s (213.0 readings/s) for 2m05s" in status_cli.render(up, str(path), NOW)
    assert "flooding  none" in status_cli.render(stats, str(path), NOW)
