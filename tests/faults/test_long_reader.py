"""A long reader on the database (issue 6, fault e): a report or a backup holding a read
transaction open must not stop ingestion, lose or duplicate a reading.

In WAL mode a reader keeps its snapshot while the writer commits into the WAL; the only
thing it holds back is the checkpoint, so the WAL grows until the reader lets go. The test
holds a snapshot open while a device publishes, checks that the gateway committed and acked
everything meanwhile (and that the reader still sees its old snapshot), then lets go.
"""

from __future__ import annotations

import sqlite3
import time

import msgpack
import paho.mqtt.client as paho
import pytest
import trio

from adapters.mqtt import LinkSettings, MqttLink
from gateway.service import Gateway, ServiceSettings
from gateway.store import Store

pytestmark = pytest.mark.trio

NOW = int(time.time() * 1000)
MESSAGES, PER_MESSAGE = 20, 25


def publish(port: int, messages: list[bytes]) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"dev-{time.time_ns()}", protocol=paho.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for info in [client.publish("pmp/v1/dev/tono-1/m", payload, qos=1) for payload in messages]:
        info.wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


async def test_a_long_reader_neither_stops_nor_corrupts_ingestion(broker, tmp_path):
    path = tmp_path / "pmp.db"
    with Store.open(path) as store:
        store.add_patient("P1", tz="UTC")
        store.add_device("tono-1", "bp")
        store.bind("tono-1", "P1", 0)
        readings = [{"seq": s, "t": NOW - 3_600_000 + s * 1000, "type": "bp", "sys": 120 + s % 30, "dia": 80}
                    for s in range(MESSAGES * PER_MESSAGE)]
        payloads = [msgpack.packb(readings[i:i + PER_MESSAGE]) for i in range(0, len(readings), PER_MESSAGE)]
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        before = reader.execute("SELECT COUNT(*) FROM readings").fetchone()[0]  # the snapshot starts here
        link = MqttLink(LinkSettings(host="127.0.0.1", port=broker.port, client_id="pmpgw-test",
                                     state_topic="pmp/v1/gateway/test/state"))
        gateway = Gateway(store, link, ServiceSettings(gw_id="test", batch_max=4))
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            await trio.to_thread.run_sync(publish, broker.port, payloads)
            with trio.fail_after(20):
                while store.counters()["stored"] < len(readings):
                    await trio.sleep(0.05)
            assert link.stats.acked >= MESSAGES and gateway.last_error == ""
            assert reader.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == before == 0  # old snapshot
            gateway.drain()
        reader.execute("COMMIT")
        assert reader.execute("SELECT COUNT(*) FROM readings").fetchone()[0] == len(readings)
        reader.close()
        assert [r["seq"] for r in store.readings("P1")] == list(range(len(readings)))
        assert store.counters()["quarantined"] == {} and store.counters()["duplicate"] == 0
