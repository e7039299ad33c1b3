"""The writer: decode + core + one commit, window state across restarts, day close."""

import msgpack
import numpy as np
import pytest

from adapters.mqtt import Received
from gateway.clock import now_ms
from gateway.ingest import DAY_MS, Ingest
from gateway.store import Store
from tests.gateway.dbs import rows

NOW = now_ms()


@pytest.fixture
def store(db):
    with Store.open(db) as opened:
        opened.add_patient("P1", tz="UTC")
        opened.add_device("tono-1", "bp")
        opened.bind("tono-1", "P1", 0)
        yield opened


def received(readings, mid=1):
    return Received("pmp/v1/dev/tono-1/m", msgpack.packb(readings), mid, 1, 1, NOW)


def week_of_high_bp(days=7, per_day=4):
    """Home BP above 135/85 on each of the last ``days`` days, ``per_day`` readings a day."""
    today = NOW // DAY_MS
    return [{"seq": d * per_day + k, "t": (today - days + d) * DAY_MS + 8 * 3_600_000 + k * 60_000, "type": "bp",
             "sys": 150, "dia": 95} for d in range(days) for k in range(per_day)]


@pytest.mark.parametrize("shared", [False, True], ids=["one-gateway", "shared"])
def test_publications_are_alerts_then_contiguous_acks(store, shared):
    outcome = Ingest(store, shared=shared).process(
        [received([{"seq": 0, "t": NOW - 1000, "type": "bp", "sys": 190, "dia": 100}])], NOW)
    topics = [t for t, _ in outcome.publications]
    assert topics == ["pmp/v1/alert/P1", "pmp/v1/dev/tono-1/ack"]
    assert outcome.result.stored == 1


def test_day_close_raises_the_home_bp_alert_with_esh_values(store):
    ingest = Ingest(store)
    ingest.process([received(week_of_high_bp())], NOW)
    ingest.closed_day = ingest.closed_day - 1  # as if the gateway last looked yesterday
    outcome = ingest.close_days(NOW)
    (alert,) = outcome.result.alerts
    assert (alert["rule"], alert["severity"], alert["patient"]) == ("BP_HOME_HIGH", "warning", "P1")
    assert alert["values"]["mean_sys"] == 150 and alert["values"]["n"] == 24  # the first of 7 days discarded
    assert ingest.close_days(NOW).result.alerts == []  # the same day closes once


def test_window_state_survives_a_restart(store):
    first = Ingest(store)
    first.process([received(week_of_high_bp(days=3))], NOW)
    first.save_windows()
    first.process([received(week_of_high_bp(days=7)[12:], mid=2)], NOW)  # stored after the save
    restarted = Ingest(store)
    assert np.array_equal(restarted.pipeline.windows.arrays()["acc"], first.pipeline.windows.arrays()["acc"])


@pytest.mark.parametrize("shared", [False, True], ids=["one-gateway", "shared"])
def test_acks_continue_across_a_restart(store, shared):
    Ingest(store, shared=shared).process(
        [received([{"seq": s, "t": NOW - 1000 - s, "type": "bp", "sys": 120, "dia": 80} for s in (0, 1, 2)])], NOW)
    restarted = Ingest(store, shared=shared)
    gap = restarted.process([received([{"seq": 4, "t": NOW - 900, "type": "bp", "sys": 120, "dia": 80}])], NOW)
    assert [t for t, _ in gap.publications] == []  # seq 3 not yet committed: no ack past 2
    filled = restarted.process([received([{"seq": 3, "t": NOW - 950, "type": "bp", "sys": 120, "dia": 80}])], NOW)
    assert filled.publications == [("pmp/v1/dev/tono-1/ack", b'{"seq": 4}')]


def test_old_dedup_keys_are_pruned_daily_and_the_store_still_catches_resends(store):
    ingest = Ingest(store)
    old = {"seq": 0, "t": NOW - 40 * DAY_MS, "type": "bp", "sys": 120, "dia": 80}
    ingest.process([received([old])], NOW - 39 * DAY_MS)
    assert len(ingest.pipeline.dedup) == 1
    ingest.pruned_day -= 1
    ingest.close_days(NOW)
    assert len(ingest.pipeline.dedup) == 0
    again = ingest.process([received([old], mid=2)], NOW - 39 * DAY_MS)
    assert (again.result.stored, again.result.duplicate) == (0, 1)


@pytest.mark.parametrize("shared", [False, True], ids=["one-gateway", "shared"])
def test_device_and_hub_acks_in_one_batch(store, shared):
    from adapters import gatt_encode as enc

    store.add_device("hub-1", "hub")
    record = {"dev": "AA:BB:CC:DD:EE:01", "uuid": 0x2A35, "rx": NOW - 500, "tz": 0, "hseq": 7,
              "val": enc.blood_pressure(enc.sfloat(120), enc.sfloat(80), enc.sfloat(93))}
    outcome = Ingest(store, shared=shared).process([
        received([{"seq": 0, "t": NOW - 1000, "type": "bp", "sys": 120, "dia": 80}]),
        Received("pmp/v1/hub/hub-1/gatt", msgpack.packb([record]), 2, 1, 1, NOW)], NOW)
    assert outcome.publications == [("pmp/v1/dev/tono-1/ack", b'{"seq": 0}'), ("pmp/v1/hub/hub-1/ack", b'{"hseq": 7}')]


def test_a_refused_commit_loses_nothing_when_retried(tmp_path):
    import sqlite3

    from gateway.store import StoreError

    path = tmp_path / "locked.db"
    with Store.open(path, busy_timeout_ms=50) as locked_store:
        locked_store.add_patient("P1", tz="UTC")
        locked_store.add_device("tono-1", "bp")
        locked_store.bind("tono-1", "P1", 0)
        ingest = Ingest(locked_store)
        batch = [received([{"seq": 0, "t": NOW - 1000, "type": "bp", "sys": 185, "dia": 90}])]
        blocker = sqlite3.connect(path)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
        with pytest.raises(StoreError):
            ingest.process(batch, NOW)
        assert ingest.device_acks.acked("tono-1") is None  # the refused batch moved no ack
        blocker.rollback()
        blocker.close()
        retried = ingest.process(batch, NOW)
        assert (retried.result.stored, retried.result.duplicate) == (1, 0)
        assert [t for t, _ in retried.publications] == ["pmp/v1/alert/P1", "pmp/v1/dev/tono-1/ack"]
        assert locked_store.publisher_acks("dev") == {"tono-1": 0}  # saved with the batch it confirms


def test_a_late_crisis_is_urgent_until_a_current_one_makes_it_an_emergency(store):
    ingest = Ingest(store)
    late = ingest.process([received([{"seq": 0, "t": NOW - 2 * DAY_MS, "type": "bp", "sys": 190, "dia": 100}])], NOW)
    (alert,) = late.result.alerts
    assert (alert["severity"], alert["late"], alert["route"]) == ("urgent", True, ["physician"])
    current = ingest.process([received([{"seq": 1, "t": NOW - 1000, "type": "bp", "sys": 192, "dia": 100}], mid=2)],
                             NOW)
    (alert,) = current.result.alerts
    assert (alert["severity"], alert["late"], set(alert["route"])) == ("emergency", False, {"physician", "nurse"})


def test_a_window_save_writes_only_the_patients_whose_state_changed(store):
    """Window state is ~3 KiB a patient: a save writes the patients that got readings since
    the last save, and a restart still restores every patient's state exactly."""
    store.add_patient("P2", tz="UTC")
    first = Ingest(store)
    first.process([received(week_of_high_bp(days=2))], NOW)
    first.save_windows()
    saved = rows(store.path, "SELECT patient FROM windows ORDER BY patient")
    assert saved == [(0,)]  # P1 only: P2 has no readings
    first.save_windows()  # nothing changed: nothing written, the state on disk still complete
    restarted = Ingest(store)
    assert np.array_equal(restarted.pipeline.windows.arrays()["acc"], first.pipeline.windows.arrays()["acc"])


def bp_readings(seqs, sys=120, t0=None):
    """Home BP readings of ``seqs``, a minute apart from ``t0`` (default: two days ago)."""
    t0 = NOW - 2 * DAY_MS if t0 is None else t0
    return [{"seq": s, "t": t0 + s * 60_000, "type": "bp", "sys": sys, "dia": 80} for s in seqs]


def test_a_bounded_dedup_table_decides_resends_of_evicted_keys_through_the_store(store, tmp_path):
    """32 slots (16 keys) for 24 readings: the oldest keys are evicted. Late re-sends of them
    are looked up in the store (one query a batch): the same values are DUPLICATE, other
    values (a reused seq, at another time too) CONFLICT; each reading is stored once, and the
    window state is exactly that of the readings without the re-sends."""

    ingest = Ingest(store, dedup_max_capacity=32)
    for mid, start in enumerate(range(0, 24, 4)):
        outcome = ingest.process([received(bp_readings(range(start, start + 4)), mid=mid)], NOW)
        assert outcome.result.stored == 4
    dedup = ingest.dedup_stats()
    assert dedup["max_capacity"] == dedup["peak_capacity"] == 32 and dedup["keys"] <= 16
    assert dedup["horizon"] > NOW - 2 * DAY_MS and dedup["recalled"] == 0  # seq 0 ... 7 evicted
    resent = bp_readings(range(6)) + bp_readings([6], sys=150) + bp_readings([7], sys=130, t0=NOW - 3_600_000)
    late = ingest.process([received(resent, mid=10)], NOW)
    assert (late.result.stored, late.result.duplicate, late.result.quarantined) == (0, 6, {"CONFLICT": 2})
    assert ingest.dedup_stats()["recalled"] == 8 and ingest.dedup_stats()["recalled_found"] == 8
    again = ingest.process([received(resent, mid=11)], NOW)  # before the horizon still: asked again
    assert (again.result.stored, again.result.duplicate, again.result.quarantined) == (0, 6, {"CONFLICT": 2})
    assert ingest.dedup_stats()["recalled"] == 16
    assert rows(store.path, "SELECT dedup_key, sys FROM readings ORDER BY dedup_key") == [(s, 120.0) for s in range(24)]
    with Store.open(tmp_path / "without-resends.db") as plain:
        plain.add_patient("P1", tz="UTC")
        plain.add_device("tono-1", "bp")
        plain.bind("tono-1", "P1", 0)
        reference = Ingest(plain)
        for mid, start in enumerate(range(0, 24, 4)):
            reference.process([received(bp_readings(range(start, start + 4)), mid=mid)], NOW)
        assert np.array_equal(ingest.pipeline.windows.arrays()["acc"], reference.pipeline.windows.arrays()["acc"])


def test_a_restart_fills_the_bounded_table_with_the_newest_keys_and_still_decides_older_ones(store):
    ingest = Ingest(store, dedup_max_capacity=32)
    ingest.process([received(bp_readings(range(40)))], NOW)  # one batch larger than the bound
    restarted = Ingest(store, dedup_max_capacity=32)
    dedup = restarted.dedup_stats()
    assert dedup["peak_capacity"] == 32 and 0 < dedup["keys"] <= 16
    assert sorted(restarted.pipeline.dedup.keys()["key"].tolist()) == list(range(40 - dedup["keys"], 40))
    resent = restarted.process([received(bp_readings([0, 39]) + bp_readings([1], sys=140), mid=2)], NOW)
    assert (resent.result.stored, resent.result.duplicate, resent.result.quarantined) == (0, 2, {"CONFLICT": 1})


def test_the_store_finds_a_duplicate_the_core_did_not_see(store):
    """The store's UNIQUE key is the last line: a re-send another writer stored meanwhile (not
    in this writer's table) is counted DUPLICATE, or quarantined as CONFLICT, and stored once."""
    first, second = Ingest(store), Ingest(store)
    first.process([received(bp_readings([0, 1]))], NOW)
    outcome = second.process([received(bp_readings([0]) + bp_readings([1], sys=150), mid=2)], NOW)
    assert (outcome.result.stored, outcome.result.duplicate, outcome.result.quarantined) == (0, 1, {"CONFLICT": 1})
    assert store.count_readings() == 2
