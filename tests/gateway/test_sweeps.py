"""MISSED and DEVICE sweeps: pure decisions at their boundaries with a controllable clock,
the lifecycle on a real SQLite file (idempotence, resolution by the gateway and by staff,
re-notification, restart), and the sweep timer of a running gateway on a real Mosquitto."""

import json

import msgpack
import numpy as np
import pytest
import trio

from adapters.mqtt import LinkSettings, MqttLink, Received
from core.bindings import BINDING_DTYPE, OPEN_END
from core.codes import NO_USER
from core.rule_tables import Rule
from gateway.activity import NEVER, Activity
from gateway.clock import now_ms
from gateway.ingest import DAY_MS, Ingest
from gateway.service import Gateway, ServiceSettings
from gateway.store import Store
from gateway.store.store import COOLDOWN_MS
from gateway.sweeps import (RESOLVED_NOTES, OpenTask, Registry, Task, bound_at, decide, device_problems,
                            device_tasks, missed_tasks, task_values)
from tests.gateway.test_service import Watcher, publish, until

NOW = now_ms()
SAT = 1_764_072_000_000  # a fixed clock for the pure tests
MISSED_AT = 3 * DAY_MS
SILENT_AT = 7 * DAY_MS


def registry(patients, devices, bindings):
    """Registry of patients ``(programmes, dispensary, targets, created)``, devices ``(id,
    kind, retired)`` and bindings ``(device, start, end, patient)`` (end None: open), by index."""
    return Registry.from_rows(
        [(i, programmes, dispensary, json.dumps(targets), created)
         for i, (programmes, dispensary, targets, created) in enumerate(patients)],
        [(i, device_id, kind, retired) for i, (device_id, kind, retired) in enumerate(devices)],
        np.array([(d, NO_USER, start, OPEN_END if end is None else end, p) for d, start, end, p in bindings],
                 dtype=BINDING_DTYPE))


def missed_at(reg, last_valid, now, resolved=None):
    resolved = np.full(reg.n_patients, NEVER, dtype=np.int64) if resolved is None else resolved
    tasks, _ = missed_tasks(reg, bound_at(reg, now), last_valid, resolved, now)
    return {task.patient: task for task in tasks}


def last(n_patients, **columns):
    out = np.full((n_patients, 3), NEVER, dtype=np.int64)
    for metric, value in columns.items():
        out[:, ["bp", "glu", "cgm"].index(metric)] = value
    return out


# -- MISSED -------------------------------------------------------------------------------


def test_missed_after_exactly_the_plan_interval_and_not_before():
    reg = registry([("AH", 1, {}, SAT - 30 * DAY_MS)], [("T0", "bp", None)], [(0, SAT - 30 * DAY_MS, None, 0)])
    reading = SAT - MISSED_AT
    assert missed_at(reg, last(1, bp=reading), SAT) == {}  # exactly 3 days: not yet
    (task,) = missed_at(reg, last(1, bp=reading), SAT + 1).values()
    assert (task.rule, task.t, task.problems) == (Rule.MISSED, SAT, ("bp",))
    activity = Activity(1, 1)
    activity.last_valid[:] = last(1, bp=reading)
    assert task_values(task, reg, activity) == {"metrics": ["bp"], "last_valid": {"bp": reading},
                                                "plan_days": {"bp": 3.0}}


def test_a_patient_enrolled_less_than_one_interval_ago_is_not_missed_yet():
    enrolled = SAT - 2 * DAY_MS
    reg = registry([("AH", 1, {}, enrolled)], [("T0", "bp", None)], [(0, 0, None, 0)])
    assert missed_at(reg, last(1), SAT) == {}
    assert missed_at(reg, last(1), enrolled + MISSED_AT) == {}
    task = missed_at(reg, last(1), enrolled + MISSED_AT + 1)[0]
    assert task_values(task, reg, Activity(1, 1))["last_valid"] == {"bp": None}


def test_the_interval_counts_from_the_first_binding_when_it_is_later_than_enrolment():
    reg = registry([("AH", 1, {}, SAT - 30 * DAY_MS)], [("T0", "bp", None)], [(0, SAT - DAY_MS, None, 0)])
    assert missed_at(reg, last(1), SAT) == {}
    assert 0 in missed_at(reg, last(1), SAT - DAY_MS + MISSED_AT + 1)


def test_only_observed_patients_with_a_measuring_device_bound_now_are_covered():
    long_ago = SAT - 30 * DAY_MS
    reg = registry(
        [("AH", 0, {}, long_ago), ("AH", 1, {}, long_ago), ("AH", 1, {}, long_ago), ("AH", 1, {}, long_ago),
         ("AH", 1, {}, long_ago)],
        [("T0", "bp", None), ("T1", "bp", SAT - DAY_MS), ("H2", "hub", None), ("T3", "bp", None),
         ("T4", "bp", None)],
        [(0, long_ago, None, 0),  # not under dispensary observation
         (1, long_ago, None, 1),  # its device was retired yesterday
         (2, long_ago, None, 2),  # a hub measures nothing
         (3, long_ago, SAT - DAY_MS, 3),  # unbound yesterday
         (4, long_ago, None, 4)])
    tasks, covered = missed_tasks(reg, bound_at(reg, SAT), last(5), np.full(5, NEVER), SAT)
    assert [t.patient for t in tasks] == [4]
    assert covered.tolist() == [False, False, False, False, True]


def test_plan_days_from_the_targets_and_glucose_becomes_cgm_with_a_cgm_bound():
    long_ago = SAT - 30 * DAY_MS
    reg = registry([("AH,DM2", 1, {"plan": {"bp": 1, "glu": 2}}, long_ago), ("DM1", 1, {}, long_ago)],
                   [("T0", "bp", None), ("G0", "glu", None), ("C1", "cgm", None), ("G1", "glu", None)],
                   [(0, long_ago, None, 0), (1, long_ago, None, 0), (2, SAT - 2 * DAY_MS, None, 1),
                    (3, long_ago, None, 1)])
    readings = last(2, bp=SAT - DAY_MS - 1, glu=SAT - 2 * DAY_MS)
    tasks = missed_at(reg, readings, SAT)
    assert tasks[0].problems == ("bp",) and task_values(tasks[0], reg, Activity(4, 2))["plan_days"] == {"bp": 1.0}
    assert 1 not in tasks  # its CGM was bound 2 days ago: counted from then, glucometer readings aside
    tasks = missed_at(reg, readings, SAT + DAY_MS + 1)
    assert tasks[0].problems == ("bp", "glu")
    assert tasks[1].problems == ("cgm",) and tasks[1].t == SAT + DAY_MS


def test_a_resolution_restarts_the_interval():
    reg = registry([("AH", 1, {}, 0)], [("T0", "bp", None)], [(0, 0, None, 0)])
    resolved = np.array([SAT - DAY_MS])
    assert missed_at(reg, last(1), SAT, resolved) == {}
    assert missed_at(reg, last(1), SAT - DAY_MS + MISSED_AT + 1, resolved)[0].t == SAT - DAY_MS + MISSED_AT


# -- DEVICE -------------------------------------------------------------------------------


def one_device(kind="bp", bound_from=SAT - 30 * DAY_MS):
    reg = registry([("AH", 1, {}, 0)], [("T0", kind, None)], [(0, bound_from, None, 0)])
    activity = Activity(1, 1)
    activity.last_rx[0] = SAT - DAY_MS
    return reg, activity


def problems_at(reg, activity, now):
    problems, _ = device_problems(bound_at(reg, now), activity, now)
    return dict(zip(("silent", "reject_rate", "clock", "battery"), problems[0].tolist()))


def test_silent_after_exactly_seven_days_counted_from_the_last_message_or_the_binding():
    reg, activity = one_device()
    assert not problems_at(reg, activity, SAT - DAY_MS + SILENT_AT)["silent"]
    assert problems_at(reg, activity, SAT - DAY_MS + SILENT_AT + 1)["silent"]
    reg, activity = one_device(bound_from=SAT - SILENT_AT)
    activity.last_rx[0] = NEVER  # never heard from since it was handed out
    assert not problems_at(reg, activity, SAT)["silent"]
    assert problems_at(reg, activity, SAT + 1)["silent"]


def test_reject_rate_above_twenty_percent_of_the_last_fifty():
    reg, activity = one_device()
    activity.counted[0] = 50
    activity.rejects[0] = (1 << 10) - 1  # 10 of 50 = 20 %: not above
    assert not problems_at(reg, activity, SAT)["reject_rate"]
    activity.rejects[0] = (1 << 11) - 1
    assert problems_at(reg, activity, SAT)["reject_rate"]
    activity.counted[0], activity.rejects[0] = 9, (1 << 9) - 1  # too few readings to say
    assert not problems_at(reg, activity, SAT)["reject_rate"]
    activity.counted[0], activity.rejects[0] = 10, 0b111
    assert problems_at(reg, activity, SAT)["reject_rate"]


def test_clock_off_when_the_latest_reading_had_a_clock_fault():
    reg, activity = one_device()
    activity.counted[0], activity.clock_faults[0] = 5, 0b10
    assert not problems_at(reg, activity, SAT)["clock"]
    activity.clock_faults[0] = 0b01
    assert problems_at(reg, activity, SAT)["clock"]


def test_battery_below_fifteen_percent_or_the_meters_own_status():
    reg, activity = one_device()
    activity.battery[0] = 15.0
    assert not problems_at(reg, activity, SAT)["battery"]
    activity.battery[0] = 14.9
    assert problems_at(reg, activity, SAT)["battery"]
    activity.battery[0], activity.battery_low[0] = np.nan, True
    assert problems_at(reg, activity, SAT)["battery"]
    activity.reset_at[0] = SAT - DAY_MS  # resolved by staff at its last message: no news since
    assert not problems_at(reg, activity, SAT)["battery"]


def test_a_device_task_is_raised_on_every_patient_the_device_is_bound_to():
    reg = registry([("AH", 1, {}, 0), ("AH", 1, {}, 0)], [("T0", "bp", None), ("T1", "bp", None)],
                   [(0, 0, None, 0), (0, 0, None, 1), (1, 0, None, 1)])
    activity = Activity(2, 2)
    activity.last_rx[:] = SAT - DAY_MS
    activity.battery[0] = 5.0
    tasks, covered = device_tasks(reg, bound_at(reg, SAT), activity, SAT)
    assert [(t.patient, t.t, t.problems) for t in tasks] == [(0, SAT - DAY_MS, (("T0", ("battery",)),)),
                                                             (1, SAT - DAY_MS, (("T0", ("battery",)),))]
    assert task_values(tasks[0], reg, activity) == {
        "devices": {"T0": ["battery"]}, "figures": {"T0": {"last_rx": SAT - DAY_MS, "battery": 5.0, "battery_low": False,
                                                           "readings": 0, "rejected": 0, "clock_faults": 0}}}
    assert covered.tolist() == [True, True]
    activity.last_rx[1] = SAT - SILENT_AT - 1
    (_, task), _ = device_tasks(reg, bound_at(reg, SAT), activity, SAT)
    assert (task.t, task.problems) == (SAT - DAY_MS, (("T0", ("battery",)), ("T1", ("silent",))))  # the earliest


# -- lifecycle decisions --------------------------------------------------------------------


def open_task(values, *, state="open", notified=SAT, rule="MISSED", alert_id=7):
    return OpenTask(alert_id, 0, rule, state, notified, values)


def test_decide_raises_new_and_changed_tasks_and_renotifies_open_ones_after_the_cooldown():
    task = Task(0, Rule.MISSED, SAT, ("bp",))
    covered = {Rule.MISSED: np.array([True]), Rule.DEVICE: np.array([True])}
    assert decide([task], covered, [], SAT) == ([task], [])
    same = open_task({"metrics": ["bp"], "last_valid": {"bp": 5}})  # figures differ: the same task
    assert decide([task], covered, [same], SAT + COOLDOWN_MS - 1) == ([], [])
    assert decide([task], covered, [same], SAT + COOLDOWN_MS) == ([task], [])
    acknowledged = same._replace(state="acknowledged")
    assert decide([task], covered, [acknowledged], SAT + COOLDOWN_MS) == ([], [])
    changed = open_task({"metrics": ["bp", "glu"]}, state="acknowledged")
    assert len(decide([task], covered, [changed], SAT + 1)[0]) == 1


def test_decide_resolves_open_tasks_whose_condition_cleared_with_a_note():
    covered = {Rule.MISSED: np.array([True]), Rule.DEVICE: np.array([False])}
    stale = [open_task({"metrics": ["bp"]}), open_task({"devices": {"T0": ["silent"]}}, rule="DEVICE", alert_id=8)]
    assert decide([], covered, stale, SAT) == ([], [(7, RESOLVED_NOTES[Rule.MISSED, True]),
                                                    (8, RESOLVED_NOTES[Rule.DEVICE, False])])


# -- on a real database (an SQLite file, and PostgreSQL) ----------------------------------


@pytest.fixture
def store(db):
    with Store.open(db) as opened:
        opened.add_staff("pa1", "Anna", "personal_admin")
        opened.add_staff("da1", "Boris", "device_admin")
        opened.add_patient("P1", programmes=("AH",), tz="UTC", now_ms=NOW - 30 * DAY_MS)
        opened.add_device("tono-1", "bp")
        opened.bind("tono-1", "P1", 0)
        yield opened


def bp(seq, t, **extra):
    return {"seq": seq, "t": t, "type": "bp", "sys": 120, "dia": 80, **extra}


def feed(ingest, readings, at):
    return ingest.process([Received("pmp/v1/dev/tono-1/m", msgpack.packb(readings), 1, 1, 1, at)], at)


def rules(publications):
    return [json.loads(payload)["rule"] for _, payload in publications]


def test_sweep_twice_raises_nothing_twice_and_a_restart_raises_nothing_again(store):
    ingest = Ingest(store)
    feed(ingest, [bp(0, NOW - 4 * DAY_MS, bat=10)], NOW)
    assert sorted(rules(ingest.sweep(NOW))) == ["DEVICE", "MISSED"]
    events = [len(store.alert_events(a["id"])) for a in store.alerts()]
    assert ingest.sweep(NOW) == [] and ingest.sweep(NOW + 60_000) == []
    assert [len(store.alert_events(a["id"])) for a in store.alerts()] == events  # not even updated
    ingest.save_windows()
    assert Ingest(store).sweep(NOW + 120_000) == []
    assert len(store.alerts()) == 2
    (device,) = store.alerts(patient="P1", severity="task", state="open", role="device_admin")
    assert device["values"]["devices"] == {"tono-1": ["battery"]}
    assert store.silent_devices() == 0


def test_the_gateway_resolves_a_task_when_readings_resume_and_renotifies_one_that_persists(store):
    ingest = Ingest(store)
    feed(ingest, [bp(0, NOW - 4 * DAY_MS)], NOW)
    (missed,) = [json.loads(p) for _, p in ingest.sweep(NOW)]
    (renotified,) = [json.loads(p) for _, p in ingest.sweep(NOW + COOLDOWN_MS)]
    assert (renotified["id"], renotified["occurrences"]) == (missed["id"], 2)
    feed(ingest, [bp(1, NOW + COOLDOWN_MS)], NOW + COOLDOWN_MS + 1)
    assert ingest.sweep(NOW + COOLDOWN_MS + 2) == []  # resolutions are not published
    (alert,) = store.alerts()
    assert alert["state"] == "resolved"
    resolution = store.alert_events(alert["id"])[-1]
    assert (resolution["actor"], resolution["action"], resolution["note"]) == (
        "gateway", "resolved", RESOLVED_NOTES[Rule.MISSED, True])


def test_a_staff_resolution_holds_until_new_evidence(store):
    ingest = Ingest(store)
    schema_errors = [{"seq": s, "type": "bp"} for s in range(1, 11)]  # no t: rejected
    feed(ingest, [bp(0, NOW - 4 * DAY_MS)] + schema_errors, NOW)  # 10 of 11 rejected
    assert sorted(rules(ingest.sweep(NOW))) == ["DEVICE", "MISSED"]
    device, missed = sorted(store.alerts(), key=lambda a: a["rule"])
    assert device["values"]["devices"] == {"tono-1": ["reject_rate"]}
    store.resolve_alert(missed["id"], by="pa1", at_ms=NOW + 1_000, note="called, will measure")
    store.resolve_alert(device["id"], by="da1", at_ms=NOW + 1_000, note="firmware updated")
    assert ingest.sweep(NOW + 2_000) == []
    assert ingest.activity.counted[0] == 0  # the device's evidence starts again
    feed(ingest, [bp(20, NOW - 5 * DAY_MS)], NOW + 3_000)  # valid, but older than the last
    assert ingest.sweep(NOW + 4_000) == []
    assert rules(ingest.sweep(NOW + 1_000 + MISSED_AT + 1)) == ["MISSED"]  # another interval without readings
    feed(ingest, [{"seq": s, "type": "bp"} for s in range(30, 40)], NOW + MISSED_AT + 2_000)
    assert rules(ingest.sweep(NOW + MISSED_AT + 3_000)) == ["DEVICE"]
    assert [(a["rule"], a["state"]) for a in store.alerts()] == [
        ("MISSED", "resolved"), ("DEVICE", "resolved"), ("MISSED", "open"), ("DEVICE", "open")]
    ingest.save_windows()
    restarted = Ingest(store)
    assert restarted.sweep(NOW + MISSED_AT + 4_000) == []
    assert restarted.activity.counted[0] == 11  # the old resolution, read again, resets nothing again


# -- in a running gateway -------------------------------------------------------------------


@pytest.mark.trio
async def test_the_gateway_sweeps_on_its_timer_publishes_tasks_once(broker, store):
    watcher = Watcher(broker, ["pmp/v1/alert/#"])
    link = MqttLink(LinkSettings(host="127.0.0.1", port=broker.port, client_id="pmpgw-test",
                                 state_topic="pmp/v1/gateway/test/state"))
    gateway = Gateway(store, link, ServiceSettings(gw_id="test", stats_interval_s=0.5, sweep_interval_s=0.1))
    reading = msgpack.packb(bp(0, NOW - 4 * DAY_MS, bat=10))  # measured 4 days ago, battery low
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        await trio.to_thread.run_sync(publish, broker, [("pmp/v1/dev/tono-1/m", reading)])
        await until(lambda: len(watcher.on("pmp/v1/alert/")) >= 2)
        await trio.sleep(0.5)  # five more sweeps
        gateway.drain()
    watcher.stop()
    published = watcher.on("pmp/v1/alert/P1")
    assert sorted((a["rule"], a["severity"], tuple(a["route"])) for a in published) == [
        ("DEVICE", "task", ("device_admin",)), ("MISSED", "task", ("personal_admin",))]
    assert [(a["rule"], a["occurrences"]) for a in store.alerts()] == [(a["rule"], 1) for a in published]
    assert next(a for a in published if a["rule"] == "DEVICE")["values"]["devices"] == {"tono-1": ["battery"]}
