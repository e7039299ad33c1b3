"""``pmpgw status``: the stats JSON and the view, from a real SQLite file and (for the live
gateway part) retained messages on a real Mosquitto."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import msgpack
import paho.mqtt.client as paho
import pytest

import core
from adapters.mqtt import Received
from gateway import status_cli
from gateway.store.url import is_url
from gateway.cli import main
from gateway.cli_common import broker_address_file
from gateway.ingest import Ingest
from gateway.store import Store
from gateway.store.sql import COUNT_SILENT_DEVICES, OPEN_ALERTS_SUMMARY

NOW = int(time.time() * 1000)
HOUR = 3_600_000
STATS_KEYS = {"gw", "state", "up_s", "readings", "rate_1m", "batch", "alerts_open", "queue_depth", "db_bytes",
              "gateways"}


@pytest.fixture
def db(db):
    """Three readings stored, one UNBOUND, a crisis alert and two DEVICE tasks (one device silent)."""
    path = db
    with Store.open(path) as store:
        store.add_patient("P1", tz="UTC")
        store.add_patient("P2", tz="UTC")
        store.add_device("tono-1", "bp")
        store.bind("tono-1", "P1", 0)
        readings = [{"seq": s, "t": NOW - 60_000 + s, "type": "bp", "sys": 190 if s == 2 else 120, "dia": 80}
                    for s in range(3)]
        Ingest(store).process([Received("pmp/v1/dev/tono-1/m", msgpack.packb(readings), 1, 1, 1, NOW),
                               Received("pmp/v1/dev/tono-9/m", msgpack.packb(readings[0]), 2, 1, 1, NOW)], NOW)
        store.commit_batch(core.empty_batch(0), now_ms=NOW - 2 * HOUR, alerts=[
            {"patient": 0, "rule": "DEVICE", "t": NOW, "late": False, "values": {"devices": {"tono-1": ["silent"]}}},
            {"patient": 1, "rule": "DEVICE", "t": NOW, "late": False,
             "values": {"devices": {"tono-2": ["battery"], "tono-3": ["silent", "clock"]}}}])
    return str(path)


def test_json_keeps_the_stats_shape_and_adds_alert_ages_and_silent_devices(capsys, db):
    assert main(["status", "--json", "--db", db]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert STATS_KEYS <= set(stats)
    assert (stats["gw"], stats["state"], stats["gateways"]) == (None, "down", [])
    assert stats["readings"] == {"received": 4, "stored": 3, "duplicate": 0, "quarantined": {"UNBOUND": 1}}
    assert stats["alerts_open"] == {"emergency": 1, "task": 2}
    assert stats["alerts_oldest"]["task"] == NOW - 2 * HOUR and stats["silent_devices"] == 2


def test_once_prints_the_view(capsys, db):
    assert main(["status", "--once", "--db", db]) == 0
    view = capsys.readouterr().out
    assert "gateway   none has run on this database" in view
    assert "rejects   UNBOUND 1" in view
    assert "alerts    emergency 1 (oldest " in view  # NOW is the module's import time: ages grow
    assert re.search(r"task 2 \(oldest 2h\d\dm\)", view)
    assert "devices   2 silent" in view
    assert "received 4  stored 3  duplicate 0  quarantined 1" in view


def test_the_live_view_redraws_until_ctrl_c(db):
    watch = subprocess.Popen([sys.executable, "-m", "gateway.cli", "status", "--interval", "0.1", "--db", db],
                             stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(30, watch.kill)  # bounds the reads below
    watchdog.start()
    frames = 0
    for line in watch.stdout:
        frames += line.count(status_cli.CLEAR_SCREEN)
        if frames == 2:
            break
    watch.send_signal(signal.SIGINT)
    out, _ = watch.communicate(timeout=10)
    watchdog.cancel()
    assert frames == 2 and watch.returncode == 0


def retain(broker, messages):
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"gw-{time.time_ns()}", protocol=paho.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    for topic, payload in messages:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def test_gateways_up_or_down_by_their_retained_state_with_their_live_stats(broker, db):
    broker_address_file(db).write_text(f"127.0.0.1:{broker.port}\n")
    live = {"gw": "gw1", "state": "up", "up_s": 3720.0, "rate_1m": 812.5, "batch": {"p50_ms": 3.1, "p99_ms": 9.8},
            "queue_depth": 7, "readings": {}, "alerts_open": {}, "db_bytes": 0, "store_error": ""}
    retain(broker, [("pmp/v1/gateway/gw1/state", b"online"), ("pmp/v1/gateway/gw1/stats", json.dumps(live).encode()),
                    ("pmp/v1/gateway/gw2/state", b"offline"),  # died: its Last Will; its stats still say up
                    ("pmp/v1/gateway/gw2/stats", json.dumps({**live, "gw": "gw2"}).encode())])
    with Store.open(db) as store:
        store.save_gateway_stats({**live, "gw": "gw1", "state": "down"}, now_ms=NOW - HOUR)  # its previous run
        store.save_gateway_stats({**live, "gw": "gw2"}, now_ms=NOW)
        stats = status_cli.collect(store, db)
    assert [(g["gw"], g["state"]) for g in stats["gateways"]] == [("gw1", "up"), ("gw2", "down")]
    assert (stats["gw"], stats["state"], stats["rate_1m"], stats["queue_depth"]) == ("gw1", "up", 812.5, 7)
    assert (stats["gateways"][1]["rate_1m"], stats["gateways"][1]["queue_depth"]) == (0.0, 0)
    view = status_cli.render(stats, db, NOW)
    assert "gw1  UP 1h02m  812.5 readings/s (last minute)  batch p50 3.1 ms  p99 9.8 ms  queue 7" in view
    assert "gw2  DOWN, last stats saved" in view


def test_counts_come_from_indexes_not_table_scans(db):
    if is_url(db):
        pytest.skip("SQLite's query plans")
    conn = sqlite3.connect(db)
    for sql in (OPEN_ALERTS_SUMMARY, COUNT_SILENT_DEVICES):
        plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "alerts_open_summary" in plan and "SCAN a " not in plan and "SCAN alerts" not in plan, plan
    conn.close()


def test_a_gateway_on_an_external_broker_says_why_its_store_refuses_writes(broker, db):
    """``--broker``: live stats of a gateway run with ``--broker`` (no private broker address
    on file), with its store fault; the free bytes on the database's disk come from status."""
    fault = {"reason": "DISK_FULL", "message": "no space left for the database (...)", "since": NOW - 90_000,
             "for_s": 90.0, "refusals": 7, "jobs": ["batch", "stats"], "held_messages": 412, "path": str(db),
             "free_bytes": 0}
    live = {"gw": "gw1", "state": "up", "up_s": 600.0, "rate_1m": 0.0, "batch": {"p50_ms": 3.1, "p99_ms": 9.8},
            "queue_depth": 980, "readings": {}, "alerts_open": {}, "db_bytes": 0,
            "store_error": "DISK_FULL: no space left for the database (...)", "store_fault": fault}
    retain(broker, [("pmp/v1/gateway/gw1/state", b"online"), ("pmp/v1/gateway/gw1/stats", json.dumps(live).encode())])
    with Store.open(db) as store:
        store.save_gateway_stats({**live, "store_error": "", "store_fault": None}, now_ms=NOW - HOUR)  # before
        assert status_cli.collect(store, db)["store_fault"] is None  # no broker on file: the saved stats
        stats = status_cli.collect(store, db, ("127.0.0.1", broker.port))
    assert stats["store_fault"] == fault and stats["store_error"].startswith("DISK_FULL: ")
    # This test's disk is not full; a PostgreSQL server's disk is not visible from here.
    assert stats["disk_free_bytes"] is None if is_url(db) else stats["disk_free_bytes"] > 0
    view = status_cli.render(stats, db, NOW)
    assert ("STORE REFUSES WRITES for 1m30s (7 refusals; 412 messages held, not acked): DISK_FULL: no space left "
            "for the database") in view
    assert ("disk free " in view) != is_url(db) and "DISK FULL" not in view
    assert "DISK FULL" in status_cli.render({**stats, "disk_free_bytes": 4096}, db, NOW)
