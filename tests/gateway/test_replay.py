"""Quarantine replay on real SQLite files: the live path again, dedup holding, shift, audit,
and a replay request run by a running gateway (real Mosquitto)."""

from __future__ import annotations

import datetime
import json
import time

import msgpack
import paho.mqtt.client as paho
import pytest
import trio

from adapters import gatt_encode as enc
from adapters.mqtt import LinkSettings, MqttLink, Received
from core.codes import Flag
from gateway import replay
from gateway.ingest import DAY_MS, Ingest
from gateway.replay import ReplaySpec
from gateway.service import Gateway, ServiceSettings
from gateway.store import RegistryError, Store

NOW = int(time.time() * 1000)
HOUR = 3_600_000


@pytest.fixture
def registry(db):
    """The operators' connection (a CLI process): the writer sees its changes as a gateway does."""
    with Store.open(db) as opened:
        opened.add_patient("P1", tz="UTC")
        opened.add_patient("P2", tz="UTC")
        opened.add_device("tono-1", "bp")
        yield opened


@pytest.fixture
def store(registry):
    """The writer's connection (the gateway's, or the replaying CLI's)."""
    with Store.open(registry.path) as opened:
        yield opened


def received(readings, device="tono-1", mid=1):
    return Received(f"pmp/v1/dev/{device}/m", msgpack.packb(readings), mid, 1, 1, NOW)


def bp(seq, t=NOW - 60_000, sys_=120, **extra):
    return {"seq": seq, "t": t, "type": "bp", "sys": sys_, "dia": 80, **extra}


def run(store, ingest, **spec):
    return replay.run(store, ingest, ReplaySpec(**spec), lambda: NOW)


def test_unbound_readings_replayed_after_bind_are_stored_exactly_once(store, registry):
    ingest = Ingest(store)
    ingest.process([received([bp(0), bp(1)]), received(bp(2), mid=2)], NOW)
    assert [r["reason"] for r in store.quarantine()] == ["UNBOUND"] * 3
    registry.bind("tono-1", "P1", 0)
    first = run(store, ingest, reason="UNBOUND")
    assert (first["rows"], first["stored"], first["duplicate"], first["still"]) == (3, 3, 0, {})
    assert [r["seq"] for r in store.readings("P1")] == [0, 1, 2]
    assert all(r["replayed"] == NOW for r in store.quarantine())
    counters = store.counters()
    assert (counters["received"], counters["stored"], counters["quarantined"]["UNBOUND"]) == (3, 3, 0)
    again = run(store, ingest, reason="UNBOUND")
    assert (again["rows"], again["stored"]) == (0, 0)
    assert len(store.readings("P1")) == 3 and len(store.quarantine()) == 3


def test_chunks_bounded_by_rows_and_payload_bytes_replay_everything_once(store, registry, monkeypatch):
    ingest = Ingest(store)
    ingest.process([received([bp(0), bp(1), bp(2)]), received(bp(3), mid=2), received(bp(4), mid=3)], NOW)
    registry.bind("tono-1", "P1", 0)
    monkeypatch.setattr(replay, "CHUNK_ROWS", 2)
    monkeypatch.setattr(replay, "CHUNK_BYTES", 1)  # one payload a chunk
    chunks = []
    result = replay.run(store, ingest, ReplaySpec(), lambda: NOW, progress=lambda r: chunks.append(r["rows"]))
    assert chunks == [2, 3, 4, 5, 5]  # rows 0-1 | row 2 (its payload again) | 3 | 4 | none left
    assert (result["rows"], result["stored"], result["duplicate"]) == (5, 5, 0)
    assert [r["seq"] for r in store.readings("P1")] == [0, 1, 2, 3, 4]


def test_a_reading_stored_meanwhile_by_a_re_send_is_not_stored_again(store, registry):
    ingest = Ingest(store)
    ingest.process([received([bp(0), bp(1)])], NOW)
    registry.bind("tono-1", "P1", 0)
    ingest.process([received([bp(0)], mid=2)], NOW)  # the device re-sends seq 0 after its binding
    result = run(store, Ingest(store))  # a new writer: dedup from the store's keys
    assert (result["rows"], result["stored"], result["duplicate"]) == (2, 1, 1)
    assert [r["seq"] for r in store.readings("P1")] == [0, 1]
    assert all(r["replayed"] for r in store.quarantine())
    counters = store.counters()
    assert (counters["stored"], counters["duplicate"], counters["quarantined"]["UNBOUND"]) == (2, 1, 0)


def test_a_row_that_still_cannot_be_stored_stays_once_with_the_reason_found_now(store, registry):
    ingest = Ingest(store)
    ingest.process([received([bp(0, t=NOW - 5 * DAY_MS), bp(1, sys_=400)])], NOW)
    assert [r["reason"] for r in store.quarantine()] == ["UNBOUND", "RANGE"]
    registry.bind("tono-1", "P1", NOW - DAY_MS)  # bound from yesterday: seq 0 was measured before
    result = run(store, ingest)
    assert (result["rows"], result["stored"], result["still"]) == (2, 0, {"UNBOUND": 1, "RANGE": 1})
    rows = store.quarantine()
    assert len(rows) == 2 and [r["replayed"] for r in rows] == [None, None]
    assert store.counters()["quarantined"] == {"RANGE": 1, "UNBOUND": 1}
    registry.unbind("tono-1", NOW - DAY_MS + 1)
    registry.bind("tono-1", "P2", NOW - 10 * DAY_MS, NOW - DAY_MS)  # the device was P2's then
    moved = run(store, ingest, reason="UNBOUND")
    assert (moved["rows"], moved["stored"]) == (1, 1)
    assert [r["seq"] for r in store.readings("P2")] == [0]


def test_only_the_quarantined_elements_of_a_message_are_replayed(store, registry):
    registry.bind("tono-1", "P1", 0, user=1)
    ingest = Ingest(store)
    ingest.process([received([bp(0, user=1), bp(1, user=2), bp(2, user=1)])], NOW)
    assert [(r["seq"], r["reason"]) for r in store.quarantine()] == [(1, "UNBOUND")]
    registry.bind("tono-1", "P2", 0, user=2)
    result = run(store, ingest, device="tono-1", reason="UNBOUND")
    assert (result["rows"], result["stored"], result["duplicate"]) == (1, 1, 0)
    assert [r["seq"] for r in store.readings("P2")] == [1]


def test_one_record_of_a_multi_record_cgm_value_is_told_apart_by_its_time(store, registry):
    registry.add_device("hub-1", "hub")
    registry.add_device("AA:BB:CC:DD:EE:01", "cgm")
    registry.bind("AA:BB:CC:DD:EE:01", "P1", 0)
    start = NOW - 2 * HOUR
    value = b"".join(enc.cgm_record(raw, offset) for raw, offset in ((100, 0), (1000, 5), (110, 10)))  # 1000 mg/dL
    record = {"dev": "AA:BB:CC:DD:EE:01", "uuid": 0x2AA7, "val": value, "rx": NOW - 500, "tz": 0, "cgm_start": start,
              "hseq": 1}
    ingest = Ingest(store)
    ingest.process([Received("pmp/v1/hub/hub-1/gatt", msgpack.packb([record]), 1, 1, 1, NOW)], NOW)
    (row,) = store.quarantine()
    assert (row["reason"], row["t"]) == ("RANGE", start + 5 * 60_000)
    result = run(store, ingest)
    assert (result["rows"], result["duplicate"], result["still"], result["unmatched"]) == (1, 0, {"RANGE": 1}, 0)
    assert len(store.readings("P1")) == 2


def test_an_unbound_meter_behind_a_hub_is_replayed_beside_a_bound_one(store, registry):
    registry.add_device("hub-1", "hub")
    registry.add_device("AA:BB:CC:DD:EE:01", "bp")
    registry.bind("AA:BB:CC:DD:EE:01", "P1", 0)
    records = [{"dev": f"AA:BB:CC:DD:EE:0{i}", "uuid": 0x2A35, "rx": NOW - 500, "tz": 0, "hseq": i,
                "val": enc.blood_pressure(enc.sfloat(120 + i), enc.sfloat(80), enc.sfloat(93))} for i in (1, 2)]
    ingest = Ingest(store)
    ingest.process([Received("pmp/v1/hub/hub-1/gatt", msgpack.packb(records), 1, 1, 1, NOW)], NOW)
    assert [(r["device"], r["reason"]) for r in store.quarantine()] == [("AA:BB:CC:DD:EE:02", "UNBOUND")]
    registry.bind("AA:BB:CC:DD:EE:02", "P2", 0)  # registered by the gateway on first sight
    result = run(store, ingest, reason="UNBOUND")
    assert (result["stored"], result["duplicate"]) == (1, 0)
    assert [r["sys"] for r in store.readings("P2")] == [122]


def test_shift_fixes_the_stale_readings_of_a_reset_clock_and_is_audited(store, registry):
    registry.add_staff("da1", "Device Admin", "device_admin")
    registry.bind("tono-1", "P1", 0)
    reset = int(datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc).timestamp() * 1000)
    true_t = NOW - 3 * HOUR
    memory = [{"t": reset + k * 60_000, "type": "bp", "sys": 120 + k, "dia": 80} for k in (0, 1)]  # no seq
    ingest = Ingest(store)
    ingest.process([received(memory)], NOW)
    assert [r["reason"] for r in store.quarantine()] == ["STALE", "STALE"]
    shift = true_t - reset
    result = run(store, ingest, device="tono-1", reason="STALE", shift_ms=shift, actor="da1")
    assert (result["rows"], result["stored"]) == (2, 2)
    assert [r["t"] for r in store.readings("P1")] == [true_t, true_t + 60_000]
    assert [r["t"] for r in store.quarantine()] == [reset, reset + 60_000]  # the quarantine keeps what came
    (audit,) = store.audit(action="quarantine.replay")
    assert (audit["actor"], audit["subject"]) == ("da1", "tono-1")
    assert audit["detail"]["shift_ms"] == shift and audit["detail"]["reason"] == "STALE"
    assert (audit["detail"]["state"], audit["detail"]["stored"], audit["detail"]["rows"]) == ("done", 2, 2)
    ingest.process([received(memory, mid=2)], NOW)  # the meter re-sends its memory, clock still wrong
    again = run(store, ingest, device="tono-1", reason="STALE", shift_ms=shift)
    assert (again["rows"], again["stored"], again["duplicate"]) == (2, 0, 2)  # its dedup key: as the meter sent it
    assert len(store.readings("P1")) == 2


def test_a_replayed_reading_arrives_at_the_replay_so_an_old_one_is_late_and_pages_nobody(store, registry):
    arrived = NOW - 3 * DAY_MS
    message = Received("pmp/v1/dev/tono-1/m", msgpack.packb(bp(0, t=arrived - HOUR, sys_=190)), 1, 1, 1, arrived)
    ingest = Ingest(store)
    ingest.process([message], arrived)  # measured an hour before it arrived: not late then
    registry.bind("tono-1", "P1", 0)
    assert run(store, ingest)["alerts"] == 1
    (alert,) = store.alerts(patient="P1")
    assert (alert["rule"], alert["late"]) == ("BP_CRISIS", True) and alert["severity"] != "emergency"
    (reading,) = store.readings("P1")
    assert reading["flags"] & Flag.LATE and reading["rx"] == arrived


def test_unknown_actor_or_device_is_refused_before_anything_is_written(store):
    ingest = Ingest(store)
    with pytest.raises(RegistryError, match="staff member 'nobody'"):
        run(store, ingest, actor="nobody")
    with pytest.raises(RegistryError, match="device 'tono-9'"):
        run(store, ingest, device="tono-9")
    with pytest.raises(RegistryError, match="device 'tono-9'") as refused:
        store.request_replay(actor="cli", device="tono-9", reason=None, shift_ms=0, now_ms=NOW)
    assert refused.value.reason == "UNKNOWN"
    assert store.audit(action="quarantine.replay") == []


@pytest.mark.parametrize("text, ms", [("+3d", 3 * DAY_MS), ("-2h", -2 * HOUR), ("90m", 90 * 60_000),
                                      ("30s", 30_000), ("1500", 1500), ("-1500ms", -1500)])
def test_parse_shift(text, ms):
    assert replay.parse_shift(text) == ms


def test_parse_shift_refuses_what_is_not_a_duration():
    with pytest.raises(ValueError, match="not a duration"):
        replay.parse_shift("3 days")


def test_the_writer_lock_is_held_by_one_process_at_a_time(tmp_path):
    db = str(tmp_path / "pmp.db")
    with replay.writer_lock(db, "pmpgw run") as holder:
        assert holder is None
        with replay.writer_lock(db, "pmpgw quarantine replay") as other:  # another open file: flock refuses it
            assert other.startswith("pmpgw run (pid ")
    with replay.writer_lock(db, "pmpgw quarantine replay") as again:
        assert again is None


@pytest.mark.trio
async def test_a_replay_request_is_run_by_the_running_gateway_which_publishes_its_alerts(broker, store, registry):
    registry.add_staff("da1", "Device Admin", "device_admin")
    alerts: list[dict] = []
    watcher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="watch", protocol=paho.MQTTv5)
    watcher.on_message = lambda c, u, m: alerts.append(json.loads(m.payload))
    watcher.connect("127.0.0.1", broker.port)
    watcher.subscribe("pmp/v1/alert/#", qos=1)
    watcher.loop_start()
    link = MqttLink(LinkSettings(host="127.0.0.1", port=broker.port, client_id="pmpgw-test",
                                 state_topic="pmp/v1/gateway/test/state"))
    gateway = Gateway(store, link, ServiceSettings(gw_id="test"))
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="tono", protocol=paho.MQTTv5)
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()

    async def until(condition):
        with trio.fail_after(10):
            while not condition():
                await trio.sleep(0.02)

    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        publisher.publish("pmp/v1/dev/tono-1/m", msgpack.packb(bp(0, sys_=190)), qos=1)
        await until(lambda: store.counters()["received"] == 1)
        registry.bind("tono-1", "P1", 0)
        request = store.request_replay(actor="da1", device="tono-1", reason="UNBOUND", shift_ms=0, now_ms=NOW)
        await until(lambda: store.replay_request(request)["done"] is not None)
        await until(lambda: alerts)
        gateway.drain()
    publisher.loop_stop()
    watcher.loop_stop()
    result = store.replay_request(request)["result"]
    assert (result["rows"], result["stored"], result["alerts"]) == (1, 1, 1)
    assert [r["seq"] for r in store.readings("P1")] == [0]
    assert (alerts[0]["patient"], alerts[0]["rule"], alerts[0]["severity"]) == ("P1", "BP_CRISIS", "emergency")
    (audit,) = store.audit(action="quarantine.replay")
    assert audit["actor"] == "da1" and audit["detail"]["request"] == request
