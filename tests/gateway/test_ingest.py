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


def test_publications_are_alerts_then_contiguous_acks(store):
    outcome = Ingest(store).process([received([{"seq": 0, "t": NOW - 1000, "type": "bp", "sys": 190, "dia": 100}])],
                                    NOW)
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


def test_acks_continue_across_a_restart(store):
    Ingest(store).process([received([{"seq": s, "t": NOW - 1000 - s, "type": "bp", "sys": 120, "dia": 80}
                                     for s in (0, 1, 2)])], NOW)
    restarted = Ingest(store)
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


def test_device_and_hub_acks_in_one_batch(store):
    from adapters import gatt_encode as enc

    store.add_device("hub-1", "hub")
    record = {"dev": "AA:BB:CC:DD:EE:01", "uuid": 0x2A35, "rx": NOW - 500, "tz": 0, "hseq": 7,
              "val": enc.blood_pressure(enc.sfloat(120), enc.sfloat(80), enc.sfloat(93))}
    outcome = Ingest(store).process([
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
