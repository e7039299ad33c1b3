"""The sweeps' activity state: vectorised update against a plain per-reading twin, and save /
restore on a real SQLite file (directly, and through an Ingest restart with replay)."""

import random

import msgpack
import numpy as np
import pytest

import core
from adapters.mqtt import Received
from core.codes import Flag, Kind, Reason
from gateway.activity import NEVER, OUTCOME_WINDOW, Activity
from gateway.clock import now_ms
from gateway.ingest import DAY_MS, Ingest
from gateway.store import Store

NOW = now_ms()
COUNTED_OUT = (Reason.DUPLICATE, Reason.UNBOUND)
CLOCK = (Reason.FUTURE, Reason.STALE)


@pytest.fixture
def store(db):
    with Store.open(db) as opened:
        opened.add_patient("P1", tz="UTC", programmes=("AH", "DM2"))
        opened.add_device("tono-1", "bp")
        opened.bind("tono-1", "P1", 0)
        yield opened


def rows(spec):
    """A batch of (device, patient, kind, reason, flags, t, rx) rows."""
    batch = core.empty_batch(len(spec))
    for i, (device, patient, kind, reason, flags, t, rx) in enumerate(spec):
        batch[i]["device"], batch[i]["patient"], batch[i]["kind"] = device, patient, kind
        batch[i]["reason"], batch[i]["flags"], batch[i]["t"], batch[i]["rx"] = reason, flags, t, rx
    return batch


class Twin:
    """Per-reading, per-device lists: what Activity's arrays must equal."""

    def __init__(self):
        self.outcomes: dict[int, list[tuple[bool, bool]]] = {}
        self.last_rx: dict[int, int] = {}
        self.battery: dict[int, float] = {}
        self.battery_low: dict[int, bool] = {}
        self.last_valid: dict[tuple[int, int], int] = {}

    def take(self, batch, battery, now):
        metric = {Kind.BP: 0, Kind.GLU: 1, Kind.CGM: 2}
        for row, bat in zip(batch, battery):
            device, reason, flags, kind = int(row["device"]), Reason(int(row["reason"])), int(row["flags"]), row["kind"]
            bad = Flag.ARTIFACT | Flag.CONTROL | Flag.TIME_FAULT | Flag.DEVICE_FAULT
            if reason == Reason.OK and row["patient"] >= 0 and kind in metric and not flags & bad:
                key = (int(row["patient"]), metric[kind])
                self.last_valid[key] = max(self.last_valid.get(key, NEVER), int(row["t"]))
            if device < 0:
                continue
            self.last_rx[device] = max(self.last_rx.get(device, NEVER), min(int(row["rx"]), now))
            if bat == bat:
                self.battery[device] = float(bat)
            if kind != Kind.GLU_CONTEXT:
                self.battery_low[device] = bool(flags & Flag.BATTERY_LOW)
            if kind != Kind.GLU_CONTEXT and reason not in COUNTED_OUT:
                clock = reason in CLOCK or bool(flags & Flag.TIME_FAULT)
                self.outcomes.setdefault(device, []).append((reason != Reason.OK, clock))

    def check(self, activity):
        for device, outcomes in self.outcomes.items():
            recent = outcomes[-OUTCOME_WINDOW:][::-1]  # newest first: bit 0
            assert activity.counted[device] == len(recent)
            assert int(activity.rejects[device]) == sum(rej << i for i, (rej, _) in enumerate(recent))
            assert int(activity.clock_faults[device]) == sum(clk << i for i, (_, clk) in enumerate(recent))
        for device, rx in self.last_rx.items():
            assert activity.last_rx[device] == rx
        for device, bat in self.battery.items():
            assert activity.battery[device] == bat
        for device, low in self.battery_low.items():
            assert activity.battery_low[device] == low
        expected = np.full_like(activity.last_valid, NEVER)
        for (patient, metric), t in self.last_valid.items():
            expected[patient, metric] = t
        assert np.array_equal(activity.last_valid, expected)


def test_update_equals_a_per_reading_twin_over_random_batches():
    rng = random.Random(5)
    activity, twin = Activity(), Twin()
    kinds = [Kind.BP, Kind.GLU, Kind.CGM, Kind.GLU_CONTEXT]
    flags = [0, 0, 0, Flag.ARTIFACT, Flag.TIME_FAULT, Flag.BATTERY_LOW, Flag.CONTROL]
    for _ in range(40):
        n = rng.randrange(0, 150)  # a device may have more than OUTCOME_WINDOW rows in one batch
        batch = rows([(rng.choice([-1, 0, 1, 2, 5]), rng.choice([-1, 0, 3]), rng.choice(kinds),
                       rng.choice(list(Reason)), rng.choice(flags), rng.randrange(NOW - 10 * DAY_MS, NOW),
                       rng.randrange(NOW - DAY_MS, NOW + DAY_MS)) for _ in range(n)])
        battery = np.array([rng.choice([np.nan, np.nan, 10.0, 80.0]) for _ in range(n)])
        activity.update(batch, batch["reason"], battery, NOW)
        twin.take(batch, battery, NOW)
        twin.check(activity)


def test_valid_readings_only_and_take_late_leaves_the_device_registers_alone():
    activity = Activity()
    batch = rows([(0, 0, Kind.BP, Reason.OK, Flag.ARTIFACT, NOW - 10, NOW),  # disturbed: not valid
                  (0, 0, Kind.BP, Reason.RANGE, 0, NOW - 20, NOW),  # rejected: not valid
                  (0, 0, Kind.BP, Reason.OK, 0, NOW - 30, NOW)])
    activity.update(batch, batch["reason"], None, NOW)
    assert activity.last_valid[0].tolist() == [NOW - 30, NEVER, NEVER]
    assert (activity.counted[0], int(activity.rejects[0])) == (3, 0b010)
    late = rows([(0, 0, Kind.GLU, Reason.OK, 0, NOW - DAY_MS, NOW - DAY_MS)])
    activity.take_late(late, late["reason"], NOW)
    assert activity.last_valid[0].tolist() == [NOW - 30, NOW - DAY_MS, NEVER]
    assert (activity.counted[0], int(activity.rejects[0])) == (3, 0b010)


def test_reset_evidence_empties_the_registers_once_per_resolution():
    activity = Activity()
    batch = rows([(0, 0, Kind.BP, Reason.RANGE, 0, NOW, NOW)] * 5)
    activity.update(batch, batch["reason"], None, NOW)
    activity.reset_evidence(np.array([0, 0]), np.array([NOW, NOW + 1]))
    assert (activity.counted[0], activity.rejects[0], activity.reset_at[0]) == (0, 0, NOW + 1)
    activity.update(batch[:2], batch["reason"][:2], None, NOW + 2)
    activity.reset_evidence(np.array([0]), np.array([NOW + 1]))  # the same resolution, seen again
    assert activity.counted[0] == 2


def test_save_and_load_round_trip_on_sqlite(store):
    activity = Activity()
    batch = rows([(0, 0, Kind.BP, Reason.OK, Flag.BATTERY_LOW, NOW - 5, NOW),
                  (1, 0, Kind.GLU, Reason.STALE, 0, 1, NOW - 3)])
    activity.update(batch, batch["reason"], np.array([12.5, np.nan]), NOW)
    activity.reset_evidence(np.array([1]), np.array([NOW - 1]))
    activity.mark_saved(store.save_activity(*activity.changed_rows()))
    assert not activity.device_dirty.any() and not activity.patient_dirty.any()
    assert store.save_activity(*activity.changed_rows()) == 0  # nothing changed: no rows, same mark
    loaded = Activity.from_rows(*store.load_activity())
    for name in ("last_rx", "battery", "battery_low", "rejects", "clock_faults", "counted", "reset_at", "last_valid"):
        assert np.array_equal(getattr(loaded, name), getattr(activity, name), equal_nan=True), name


def received(readings, mid, rx=NOW):
    return Received("pmp/v1/dev/tono-1/m", msgpack.packb(readings), mid, 1, 1, rx)


def bp(seq, t, **extra):
    return {"seq": seq, "t": t, "type": "bp", "sys": 120, "dia": 80, **extra}


def test_ingest_restart_restores_and_replays_what_was_stored_after_the_save(store):
    first = Ingest(store)
    first.process([received([bp(0, NOW - 3 * DAY_MS, bat=40), {"seq": 1, "type": "bp"}], 1)], NOW)
    first.save_windows()
    first.process([received([bp(2, NOW - DAY_MS, bat=9)], 2, rx=NOW + 5)], NOW + 5)  # stored after the save
    restarted = Ingest(store)
    assert restarted.activity.last_valid[0, 0] == NOW - DAY_MS  # replayed from the stored reading
    assert restarted.activity.last_rx[0] == NOW + 5
    assert (restarted.activity.counted[0], int(restarted.activity.rejects[0])) == (2, 0b01)  # as saved
    assert restarted.activity.battery[0] == 40  # as saved: the battery of unsaved batches is not replayed
    first.save_windows()
    again = Ingest(store)
    assert (again.activity.counted[0], int(again.activity.rejects[0]), again.activity.battery[0]) == (3, 0b010, 9)
