"""Window rules of gateways sharing one store (``Ingest(shared=True)``,
``gateway.shared_windows``): two writers each given part of a patient's readings raise, at
day close, the alert one writer given all of them raises, with the same values."""

import threading

import msgpack
import numpy as np
import pytest

import core
from adapters.mqtt import Received
from core.window_layout import RING_DAYS
from gateway import shared_windows
from gateway.cli import main
from gateway.clock import now_ms
from gateway.ingest import DAY_MS, Ingest
from gateway.store import Store
from tests.gateway.dbs import rows

NOW = now_ms()
TODAY = NOW // DAY_MS


def registered(store):
    store.add_patient("P1", tz="UTC")
    store.add_patient("P2", tz="Asia/Kolkata")  # +05:30: its days are not UTC's
    for device, kind, patient in (("tono-1", "bp", "P1"), ("cgm-1", "cgm", "P1"), ("tono-2", "bp", "P2")):
        store.add_device(device, kind)
        store.bind(device, patient, 0)
    return store


@pytest.fixture
def store(db):
    with Store.open(db) as opened:
        yield registered(opened)


@pytest.fixture
def reference(tmp_path):
    """One single gateway (SQLite, not shared) given every reading: what the shared ones must match."""
    with Store.open(tmp_path / "reference.db") as opened:
        yield registered(opened)


def message(device, readings, mid):
    return Received(f"pmp/v1/dev/{device}/m", msgpack.packb(readings), mid, 1, 1, NOW)


def high_bp(device, days=7, per_day=4, first_seq=0):
    """Home BP of varying values above 135/85 on each of the last ``days`` days."""
    return [{"seq": first_seq + d * per_day + k, "t": (TODAY - days + d) * DAY_MS + 8 * 3_600_000 + k * 60_000,
             "type": "bp", "sys": 140 + (d * 7 + k * 3) % 17, "dia": 86 + (d + k) % 9}
            for d in range(days) for k in range(per_day)]


def poor_cgm(days=14, per_day=288, low=2.5):
    """A CGM every 5 min of the last ``days`` days, a third of them out of range: CGM_TIR
    (with ``low`` >= 5: none below range, and no reading alert)."""
    rng = np.random.default_rng(7)
    values = rng.uniform(low, 13.0, days * per_day).round(1)
    return [{"seq": i, "t": (TODAY - days) * DAY_MS + i * 300_000, "type": "cgm", "glu": float(v)}
            for i, v in enumerate(values)]


def feed(ingests, device, readings, chunk=50):
    """Hand ``readings`` out in chunks, one message each, to the ingests in turn (a shared subscription)."""
    for n, start in enumerate(range(0, len(readings), chunk)):
        ingests[n % len(ingests)].process([message(device, readings[start:start + chunk], n + 1)], NOW)


def closed_alerts(ingest):
    ingest.closed_day = ingest.closed_day - 1  # as if the gateway last looked yesterday
    return ingest.close_days(NOW).result.alerts


def by_rule(alerts):
    return {(a["patient"], a["rule"]): a["values"] for a in alerts}


def test_two_gateways_raise_the_alerts_one_gateway_raises_with_the_same_values(store, reference):
    gw1, gw2 = Ingest(store, shared=True), Ingest(store, shared=True)
    single = Ingest(reference)
    for device, readings in (("tono-1", high_bp("tono-1")), ("tono-2", high_bp("tono-2", per_day=3)),
                             ("cgm-1", poor_cgm())):
        feed([gw1, gw2], device, readings)
        feed([single], device, readings)
    expected = by_rule(closed_alerts(single))
    assert set(expected) == {("P1", "BP_HOME_HIGH"), ("P2", "BP_HOME_HIGH"), ("P1", "CGM_TIR")}
    assert expected[("P1", "BP_HOME_HIGH")]["n"] == 24  # the first of 7 days discarded
    shared = by_rule(closed_alerts(gw2))
    assert set(shared) == set(expected)
    for key in (("P1", "BP_HOME_HIGH"), ("P2", "BP_HOME_HIGH")):
        assert shared[key] == expected[key]  # integer mmHg: sums exact in any order
    for name, value in expected[("P1", "CGM_TIR")].items():  # float sums, added in another order
        assert shared[("P1", "CGM_TIR")][name] == pytest.approx(value, rel=1e-12)


def test_each_closed_day_is_evaluated_by_one_gateway(store):
    gw1, gw2 = Ingest(store, shared=True), Ingest(store, shared=True)
    feed([gw1], "tono-1", high_bp("tono-1"))  # gw2 received none of it
    assert [a["rule"] for a in closed_alerts(gw2)] == ["BP_HOME_HIGH"]
    assert closed_alerts(gw1) == []  # claimed by gw2: neither raised nor re-notified
    assert rows(store.path, "SELECT COUNT(*) FROM alert_events") == [(1,)]
    assert rows(store.path, "SELECT patient, day FROM window_closes") == [(0, TODAY - 1)]


def test_readings_stored_by_both_count_once(store, reference):
    """Re-sends: each gateway gets every other message, and a third of the messages again
    (as a device re-sends an unacked message, which may go to the other gateway)."""
    gw1, gw2 = Ingest(store, shared=True), Ingest(store, shared=True)
    single = Ingest(reference)
    readings = high_bp("tono-1")
    feed([gw1, gw2], "tono-1", readings, chunk=4)
    feed([gw2, gw1], "tono-1", readings[::3], chunk=2)  # duplicates, on the other gateway
    feed([single], "tono-1", readings)
    assert by_rule(closed_alerts(gw1)) == by_rule(closed_alerts(single))
    assert rows(store.path, "SELECT SUM(n) FROM window_days WHERE metric = 0") == [(len(readings),)]


def test_day_sums_count_readings_further_apart_than_the_ring(store):
    """A batch with readings 40 days apart: each day's sums, none dropped (the fresh state is
    filled a block of RING_DAYS days at a time)."""
    ingest = Ingest(store)
    days = [TODAY - 40, TODAY - 40 + RING_DAYS, TODAY - 1, TODAY - 1]
    readings = [{"seq": i, "t": d * DAY_MS + 3_600_000 + i, "type": "bp", "sys": 120 + i, "dia": 80}
                for i, d in enumerate(days)]
    ingest.process([message("tono-1", readings, 1)], NOW)
    (batch, _) = store.readings_batch()
    sums = shared_windows.day_sums(core.implementation, batch, ingest.pipeline.windows.tz_min,
                                   ingest.pipeline.thresholds)
    got = sorted((int(s["day"]), *s["acc"][:3].tolist()) for s in sums)
    assert got == [(TODAY - 40, 1, 1, 120), (TODAY - 40 + RING_DAYS, 1, 1, 121), (TODAY - 1, 2, 2, 245)]


def test_day_sums_of_both_implementations_agree(store):
    ingest = Ingest(store)
    feed([ingest], "cgm-1", poor_cgm(days=3))
    feed([ingest], "tono-2", high_bp("tono-2"))
    (batch, _) = store.readings_batch()
    tz_min, thresholds = ingest.pipeline.windows.tz_min, ingest.pipeline.thresholds
    order = ["patient", "metric", "day"]
    compiled = np.sort(shared_windows.day_sums(core.compiled, batch, tz_min, thresholds), order=order)
    twin = np.sort(shared_windows.day_sums(core.reference, batch, tz_min, thresholds), order=order)
    assert len(compiled) == 3 + 7  # CGM over 3 UTC days, BP over 7 local days
    np.testing.assert_array_equal(compiled, twin)


def test_a_single_gateway_keeps_no_sums_in_the_store(store):
    ingest = Ingest(store)
    feed([ingest], "tono-1", high_bp("tono-1"))
    assert [a["rule"] for a in closed_alerts(ingest)] == ["BP_HOME_HIGH"]
    assert rows(store.path, "SELECT COUNT(*) FROM window_days") == [(0,)]
    assert rows(store.path, "SELECT COUNT(*) FROM window_closes") == [(0,)]


def test_two_gateways_at_once_on_the_same_readings(db, store, reference):
    """Two writers on their own connections at the same time, each given EVERY message (one
    in order, one in reverse: each batch races the other's for the same readings and sums),
    then both closing the day at once: every sum once, no deadlock, each alert raised once.
    The CGM readings also raise reading alerts of several rules, which two batches raise in
    other orders: the store takes their locks in (patient, rule) order (else PostgreSQL
    finds a deadlock, StoreError LOCKED)."""
    readings = {"tono-1": high_bp("tono-1"), "cgm-1": poor_cgm()}
    messages = [(device, readings[device][start:start + 200]) for device in readings
                for start in range(0, len(readings[device]), 200)]
    single = Ingest(reference)
    for n, (device, part) in enumerate(messages):
        single.process([message(device, part, n + 1)], NOW)
    expected = by_rule(closed_alerts(single))
    errors, closed = [], []

    def gateway(order):
        try:
            with Store.open(db) as own:
                ingest = Ingest(own, shared=True)
                for n in order:
                    ingest.process([message(*messages[n], n + 1)], NOW)
                barrier.wait(timeout=60)
                closed.extend(closed_alerts(ingest))
        except Exception as error:  # reported below: a thread's exception is not the test's
            errors.append(error)

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=gateway, args=(order,)) for order in
               (range(len(messages)), range(len(messages) - 1, -1, -1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == [] and not any(thread.is_alive() for thread in threads)
    assert rows(db, "SELECT metric, SUM(n) FROM window_days GROUP BY metric ORDER BY metric") == [
        (0, len(readings["tono-1"])), (2, len(readings["cgm-1"]))]
    shared = by_rule(closed)
    assert set(shared) == set(expected) == {("P1", "BP_HOME_HIGH"), ("P1", "CGM_TIR")}
    assert shared[("P1", "BP_HOME_HIGH")] == expected[("P1", "BP_HOME_HIGH")]
    assert rows(db, "SELECT a.rule, COUNT(*) FROM alert_events e JOIN alerts a ON a.id = e.alert "
                    "WHERE a.rule IN ('BP_HOME_HIGH', 'CGM_TIR') GROUP BY a.rule ORDER BY a.rule") == [
        ("BP_HOME_HIGH", 1), ("CGM_TIR", 1)]


def test_the_first_shared_gateway_seeds_the_sums_with_what_a_single_gateway_stored(store, reference):
    """A database one gateway wrote, then two sharing it: the first to start adds its restored
    window state to the store's sums, once; the windows are whole from the first day."""
    readings = high_bp("tono-1")
    feed([Ingest(store)], "tono-1", readings[:10])  # a single gateway, before
    gw1, gw2 = Ingest(store, shared=True), Ingest(store, shared=True)  # gw2 finds it seeded
    feed([gw1, gw2], "tono-1", readings[10:], chunk=4)
    single = Ingest(reference)
    feed([single], "tono-1", readings)
    assert rows(store.path, "SELECT SUM(n) FROM window_days") == [(len(readings),)]
    assert by_rule(closed_alerts(gw2)) == by_rule(closed_alerts(single))
    assert Ingest(store, shared=True).store.seed_day_sums(lambda: 1 / 0, now_ms=NOW) is False


def test_a_quarantine_replay_without_a_gateway_adds_to_the_sums_of_a_shared_database(store, capsys):
    store.add_device("tono-9", "bp")
    gateway = Ingest(store, shared=True)
    gateway.process([message("tono-9", high_bp("tono-9", days=2), 1)], NOW)  # UNBOUND: quarantined
    assert rows(store.path, "SELECT COUNT(*) FROM window_days") == [(0,)]
    store.bind("tono-9", "P1", 0)
    assert main(["quarantine", "replay", "--reason", "UNBOUND", "--db", store.path]) == 0
    assert rows(store.path, "SELECT day, n FROM window_days ORDER BY day") == [(TODAY - 2, 4), (TODAY - 1, 4)]
