"""gateway.escalation (which emergencies are due), Store.escalate_alerts on a real SQLite
file with a controllable clock, and the gateway's escalation timer against a real Mosquitto."""

from __future__ import annotations

import time

import pytest
import trio

import core
from adapters.mqtt import LinkSettings, MqttLink
from gateway.escalation import ESCALATE_AFTER_MS, Pending, due_ms, escalations_due
from gateway.service import Gateway, ServiceSettings
from gateway.store import Store
from tests.gateway.test_service import Watcher, publish, until

T0 = 1_764_072_000_000  # 2025-11-25T12:00:00Z
MIN = 60_000


def test_first_escalation_is_due_a_period_after_the_page():
    fresh = Pending(id=1, notified=T0, escalated=0, escalated_at=None)
    assert due_ms(fresh) == T0 + 15 * MIN
    assert escalations_due([fresh], T0 + 15 * MIN - 1) == []
    assert escalations_due([fresh], T0 + 15 * MIN) == [(1, 1)]


def test_later_escalations_count_from_the_last_one():
    once = Pending(id=7, notified=T0, escalated=1, escalated_at=T0 + 16 * MIN)
    assert escalations_due([once], T0 + 30 * MIN) == []  # 15 min after the escalation, not the raise
    assert escalations_due([once], T0 + 31 * MIN) == [(7, 2)]


def test_a_gateway_down_for_an_hour_escalates_once_then_waits_a_period():
    pending = Pending(id=3, notified=T0, escalated=1, escalated_at=T0 + 15 * MIN)
    assert escalations_due([pending], T0 + 75 * MIN) == [(3, 2)]
    after = pending._replace(escalated=2, escalated_at=T0 + 75 * MIN)
    assert escalations_due([after], T0 + 75 * MIN + 30_000) == []


def test_a_renotified_alert_is_paged_anew():
    """A late alert confirmed by a current reading pages as an emergency only then."""
    renotified = Pending(id=2, notified=T0 + 60 * MIN, escalated=0, escalated_at=None)
    assert escalations_due([renotified], T0 + 74 * MIN) == []
    assert escalations_due([renotified], T0 + 75 * MIN) == [(2, 1)]


@pytest.fixture
def store(db):
    with Store.open(db) as opened:
        opened.add_staff("nurse1", "N", "nurse")
        opened.add_patient("P1", tz="UTC", now_ms=T0)
        yield opened


def raise_alert(store, rule, at_ms, late=False):
    [alert] = store.commit_batch(core.empty_batch(0), now_ms=at_ms, alerts=[
        {"patient": 0, "rule": rule, "t": at_ms, "late": late, "values": {}}]).alerts
    return alert["id"]


def test_an_unacknowledged_emergency_escalates_every_period_until_acknowledged(store):
    crisis = raise_alert(store, "BP_CRISIS", T0)
    assert store.escalate_alerts(T0 + 14 * MIN) == []
    [first] = store.escalate_alerts(T0 + 15 * MIN)
    assert (first["id"], first["escalated"], first["escalated_at"], first["state"]) == (
        crisis, 1, T0 + 15 * MIN, "open")
    assert store.escalate_alerts(T0 + 15 * MIN) == []  # idempotent at one time
    assert store.escalate_alerts(T0 + 29 * MIN) == []
    [second] = store.escalate_alerts(T0 + 30 * MIN)
    assert second["escalated"] == 2
    store.acknowledge_alert(crisis, by="nurse1", at_ms=T0 + 31 * MIN)
    assert store.escalate_alerts(T0 + 90 * MIN) == []
    assert [(e["at"], e["actor"], e["action"]) for e in store.alert_events(crisis)] == [
        (T0, "gateway", "raised"), (T0 + 15 * MIN, "gateway", "escalated"), (T0 + 30 * MIN, "gateway", "escalated"),
        (T0 + 31 * MIN, "nurse1", "acknowledged")]
    assert store.alert_events(crisis)[2]["note"] == "escalation 2: not acknowledged"


def test_only_open_emergencies_escalate(store):
    raise_alert(store, "BP_LOW", T0)  # urgent
    raise_alert(store, "GLU_LOW_L2", T0, late=True)  # late: capped at urgent, never pages
    raise_alert(store, "MISSED", T0)  # task
    assert store.escalate_alerts(T0 + 10 * ESCALATE_AFTER_MS) == []


def test_escalation_survives_a_restart(store, db):
    crisis = raise_alert(store, "GLU_LOW_L2", T0)
    store.escalate_alerts(T0 + 15 * MIN)
    store.close()
    with Store.open(db) as reopened:
        assert reopened.escalate_alerts(T0 + 20 * MIN) == []  # decided from stored times, not memory
        [again] = reopened.escalate_alerts(T0 + 30 * MIN)
        assert (again["id"], again["escalated"]) == (crisis, 2)


@pytest.mark.trio
async def test_the_gateway_republishes_an_escalated_emergency(broker, store):
    """An emergency raised 16 minutes ago (its stored raise time) is escalated by the
    gateway's timer and published again with escalated: 1, once."""
    now = int(time.time() * 1000)
    crisis = raise_alert(store, "BP_CRISIS", now - 16 * MIN)
    watcher = Watcher(broker, ["pmp/v1/alert/#"])
    with trio.fail_after(10):  # the watcher is subscribed before the gateway starts
        while not watcher.on("pmp/v1/alert/probe"):
            await trio.to_thread.run_sync(publish, broker, [("pmp/v1/alert/probe", b"{}")])
            await trio.sleep(0.05)
    link = MqttLink(LinkSettings(host="127.0.0.1", port=broker.port, client_id="pmpgw-test",
                                 state_topic="pmp/v1/gateway/test/state"))
    gateway = Gateway(store, link, ServiceSettings(gw_id="test", escalation_interval_s=0.05))
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        await until(lambda: watcher.on("pmp/v1/alert/P1"))
        await trio.sleep(0.3)  # several more sweeps: nothing new is due
        gateway.drain()
    watcher.stop()
    [alert] = watcher.on("pmp/v1/alert/P1")
    assert (alert["id"], alert["rule"], alert["severity"], alert["escalated"]) == (crisis, "BP_CRISIS", "emergency", 1)
    assert [e["action"] for e in store.alert_events(crisis)] == ["raised", "escalated"]
