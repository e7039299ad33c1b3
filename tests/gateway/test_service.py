"""The gateway end to end: a real Mosquitto, a real SQLite file, real MQTT publishers."""

from __future__ import annotations

import json
import time

import msgpack
import paho.mqtt.client as paho
import pytest
import trio

from adapters.mqtt import LinkSettings, MqttLink
from core.window_layout import Acc, Metric
from gateway.service import Gateway, ServiceSettings
from gateway.store import Store

pytestmark = pytest.mark.trio

NOW = int(time.time() * 1000)


class Watcher:
    """A subscriber recording what the gateway publishes (alerts, acks)."""

    def __init__(self, broker, topics):
        self.got: list[tuple[str, bytes]] = []
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"watch-{time.time_ns()}",
                                  protocol=paho.MQTTv5)
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", broker.port)
        for topic in topics:
            self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()

    def on(self, prefix):
        return [json.loads(p) for t, p in self.got if t.startswith(prefix)]


def publish(broker, messages: list[tuple[str, bytes]]) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"dev-{time.time_ns()}", protocol=paho.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    for info in [client.publish(t, p, qos=1) for t, p in messages]:
        info.wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


@pytest.fixture
def store(db):
    with Store.open(db) as opened:
        opened.add_patient("P1", programmes=("AH", "DM2"), tz="Europe/Moscow")
        opened.add_device("tono-1", "bp")
        opened.add_device("glu-1", "glu")
        opened.bind("tono-1", "P1", 0)
        opened.bind("glu-1", "P1", 0)
        yield opened


async def until(condition, timeout_s=10.0):
    with trio.fail_after(timeout_s):
        while not condition():
            await trio.sleep(0.02)


async def serve(broker, store, body):
    link = MqttLink(LinkSettings(host="127.0.0.1", port=broker.port, client_id="pmpgw-test",
                                 state_topic="pmp/v1/gateway/test/state"))
    gateway = Gateway(store, link, ServiceSettings(gw_id="test", stats_interval_s=0.5))
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        await body(gateway)
        gateway.drain()


def bp(seq, sys_, dia, t=NOW - 60_000):
    return {"seq": seq, "t": t, "type": "bp", "sys": sys_, "dia": dia, "pul": 70}


async def test_each_reading_stored_once_acked_and_crisis_alerted(broker, store):
    watcher = Watcher(broker, ["pmp/v1/alert/#", "pmp/v1/dev/+/ack"])
    messages = [("pmp/v1/dev/tono-1/m", msgpack.packb([bp(0, 120, 80), bp(1, 185, 95)])),
                ("pmp/v1/dev/glu-1/m", msgpack.packb({"seq": 0, "t": NOW - 60_000, "type": "glu", "glu": 5.4}))]

    async def body(gateway):
        await trio.to_thread.run_sync(publish, broker, messages)
        await until(lambda: store.counters()["received"] >= 3)
        await trio.to_thread.run_sync(publish, broker, messages)  # a device re-sends everything
        await until(lambda: store.counters()["received"] >= 6)
        await until(lambda: len(watcher.on("pmp/v1/dev/")) >= 2 and watcher.on("pmp/v1/alert/"))

    await serve(broker, store, body)
    watcher.stop()
    counters = store.counters()
    assert (counters["stored"], counters["duplicate"]) == (3, 3)
    assert [r["seq"] for r in store.readings("P1") if r["type"] == "bp"] == [0, 1]
    (alert,) = watcher.on("pmp/v1/alert/")
    assert (alert["patient"], alert["rule"], alert["severity"], alert["late"]) == ("P1", "BP_CRISIS", "emergency",
                                                                                    False)
    assert set(alert["route"]) == {"physician", "nurse"}
    acks = {t: json.loads(p) for t, p in watcher.got if t.endswith("/ack")}
    assert acks == {"pmp/v1/dev/tono-1/ack": {"seq": 1}, "pmp/v1/dev/glu-1/ack": {"seq": 0}}


async def test_unbound_and_malformed_are_quarantined_beside_good_readings(broker, store):
    messages = [("pmp/v1/dev/tono-9/m", msgpack.packb(bp(0, 120, 80))),  # nobody bound to it
                ("pmp/v1/dev/tono-1/m", b'{"seq": 5, "t": 1, "type": "bp", "sys": NaN, "dia": 80}'),
                ("pmp/v1/dev/tono-1/m", b"\xc1not msgpack"),
                ("pmp/v1/dev/tono-1/m", msgpack.packb([bp(6, 130, 85), {"seq": 7, "type": "bp"}]))]

    async def body(gateway):
        await trio.to_thread.run_sync(publish, broker, messages)
        await until(lambda: store.counters()["received"] >= 5)

    await serve(broker, store, body)
    reasons = sorted(q["reason"] for q in store.quarantine())
    assert reasons == ["DECODE", "SCHEMA", "SCHEMA", "UNBOUND"]
    assert [r["seq"] for r in store.readings("P1")] == [6]
    assert "tono-9" in store.device_index()  # registered on first sight, kind unknown


async def test_late_reading_alert_is_marked_late(broker, store):
    watcher = Watcher(broker, ["pmp/v1/alert/#"])
    late = {"seq": 3, "t": NOW - 3 * 86_400_000, "type": "glu", "glu": 2.6}

    async def body(gateway):
        await trio.to_thread.run_sync(publish, broker, [("pmp/v1/dev/glu-1/m", msgpack.packb(late))])
        await until(lambda: watcher.on("pmp/v1/alert/"))

    await serve(broker, store, body)
    watcher.stop()
    (alert,) = watcher.on("pmp/v1/alert/")
    assert (alert["rule"], alert["late"]) == ("GLU_LOW_L2", True)
    assert (alert["severity"], alert["route"]) == ("urgent", ["physician"])  # never paged as an emergency


async def test_drain_commits_what_it_holds_and_says_offline(broker, store):
    watcher = Watcher(broker, ["pmp/v1/gateway/test/#"])

    async def body(gateway):
        await trio.to_thread.run_sync(publish, broker, [("pmp/v1/dev/tono-1/m", msgpack.packb(bp(0, 120, 80)))])
        await until(lambda: store.counters()["received"] >= 1)

    await serve(broker, store, body)
    await until(lambda: any(p == b"offline" for t, p in watcher.got if t.endswith("/state")))
    watcher.stop()
    stats = [json.loads(p) for t, p in watcher.got if t.endswith("/stats")]
    assert stats and stats[-1]["readings"]["stored"] == 1 and stats[-1]["gw"] == "test"


async def test_crash_between_commit_and_ack_redelivers_without_duplicates(broker, store):
    """Commit a batch, lose the connection before acking (as a SIGKILL would), restart."""
    from gateway.ingest import Ingest
    from gateway.clock import now_ms

    readings = [bp(seq, 120 + seq, 80) for seq in range(40)]
    link = MqttLink(LinkSettings(host="127.0.0.1", port=broker.port, client_id="pmpgw-test",
                                 state_topic="pmp/v1/gateway/test/state"))
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        await trio.to_thread.run_sync(publish, broker, [("pmp/v1/dev/tono-1/m", msgpack.packb(readings[:20])),
                                                        ("pmp/v1/dev/tono-1/m", msgpack.packb(readings[20:]))])
        got = []
        with trio.fail_after(10):
            while len(got) < 2:
                got += await link.receive_batch(2, 0.05)
        Ingest(store).process(got, now_ms())  # committed ...
        assert store.counters()["stored"] == 40
        link._sock.shutdown(2)  # ... and the process dies before its PUBACKs leave
        nursery.cancel_scope.cancel()

    async def body(gateway):
        await until(lambda: store.counters()["received"] >= 80)

    await serve(broker, store, body)
    counters = store.counters()
    assert (counters["stored"], counters["duplicate"]) == (40, 40)
    assert [r["seq"] for r in store.readings("P1")] == list(range(40))


async def test_a_locked_store_holds_acks_back_and_drain_still_stops(broker, tmp_path):
    """While another writer holds the database, nothing is acked; drain stops anyway and
    the restarted gateway stores what the broker kept."""
    import sqlite3

    path = tmp_path / "locked.db"
    with Store.open(path, busy_timeout_ms=50) as locked:
        locked.add_patient("P1", tz="UTC")
        locked.add_device("tono-1", "bp")
        locked.bind("tono-1", "P1", 0)
        blocker = sqlite3.connect(path)
        blocker.execute("BEGIN IMMEDIATE")

        async def body(gateway):
            await trio.to_thread.run_sync(publish, broker, [("pmp/v1/dev/tono-1/m", msgpack.packb(bp(0, 120, 80)))])
            await until(lambda: gateway.last_error.startswith("LOCKED"))
            assert gateway.link.stats.acked == 0

        await serve(broker, locked, body)
        blocker.rollback()
        blocker.close()

        async def after_restart(gateway):
            await until(lambda: locked.counters()["stored"] == 1)

        await serve(broker, locked, after_restart)


async def test_batches_the_store_refused_are_stored_once_when_it_accepts_again(broker, tmp_path, caplog):
    """While the store refuses, batches stay un-acked and the core state is rebuilt from the
    store; once it accepts, every reading is stored once (re-sent readings across batches
    stay duplicates), the window state counts each once, and the device's ack covers them all.
    The refusal is in the stats meanwhile and logged once, however many retries, and once
    more when the store takes every job's writes again (batches and the stats)."""
    import logging
    import sqlite3

    caplog.set_level(logging.INFO, logger="pmpgw")

    path = tmp_path / "refusing.db"
    with Store.open(path, busy_timeout_ms=20) as refusing:
        refusing.add_patient("P1", tz="UTC")
        refusing.add_device("tono-1", "bp")
        refusing.bind("tono-1", "P1", 0)
        # 12 messages of 5 readings, each re-sending the last 2 of the one before: seq 0..37
        messages = [("pmp/v1/dev/tono-1/m", msgpack.packb([bp(seq, 120, 80) for seq in range(3 * i, 3 * i + 5)]))
                    for i in range(12)]
        blocker = sqlite3.connect(path)
        blocker.execute("BEGIN IMMEDIATE")
        link = MqttLink(LinkSettings(host="127.0.0.1", port=broker.port, client_id="pmpgw-test",
                                     state_topic="pmp/v1/gateway/test/state"))
        gateway = Gateway(refusing, link, ServiceSettings(gw_id="test", batch_max=2, batch_wait_s=0.001,
                                                          retry_s=0.05, stats_interval_s=0.1))
        watcher = Watcher(broker, ["pmp/v1/dev/+/ack"])
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            await trio.to_thread.run_sync(publish, broker, messages)
            await until(lambda: gateway.last_error.startswith("LOCKED"))
            await trio.sleep(0.3)  # several refusals, with batches prepared behind the refused one
            await until(lambda: {"batch", "stats"} <= set(gateway.health.fault(gateway.held)["jobs"]))
            fault = gateway.health.fault(gateway.held)
            assert fault["reason"] == "LOCKED" and fault["refusals"] >= 3 and fault["held_messages"] >= 1
            blocker.rollback()
            await until(lambda: refusing.counters()["received"] >= 60)
            await until(lambda: {"seq": 37} in watcher.on("pmp/v1/dev/tono-1/ack"))
            await until(lambda: gateway.health.episode is None)
            gateway.drain()
        blocker.close()
        watcher.stop()
        counters = refusing.counters()
        assert (counters["received"], counters["stored"], counters["duplicate"]) == (60, 38, 22)
        assert [r["seq"] for r in refusing.readings("P1")] == list(range(38))
        arrays, through = refusing.load_windows()  # saved at drain, through the last reading
        assert through == 38 and arrays["acc"][Metric.BP, :, Acc.N].sum() == 38
        told = [r.getMessage() for r in caplog.records if r.name == "pmpgw"]
        assert len(told) == 2 and told[0].startswith("store refuses writes: LOCKED: ") and \
            told[1].startswith("store accepts writes again after "), told
