"""``pmpgw quarantine`` and ``pmpgw quarantine replay|replays`` on real SQLite files; with a
gateway running (a real ``pmpgw run`` process), the replay is handed to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import msgpack
import pytest

from adapters.mqtt import Received
from gateway import replay
from gateway.cli import main
from gateway.ingest import Ingest
from gateway.store import Store
from gateway.store.url import is_url

NOW = int(time.time() * 1000)
PMPGW = [sys.executable, "-m", "gateway.cli"]


def bp(seq, sys_=120):
    return {"seq": seq, "t": NOW - 60_000, "type": "bp", "sys": sys_, "dia": 80}


def sqlite_only(db: str) -> None:
    """Skip on PostgreSQL: it has no writer lock file (several gateways may write it)."""
    if is_url(db):
        pytest.skip("the writer lock file is SQLite's")


@pytest.fixture
def db(db):
    """tono-1 unbound (two UNBOUND rows), glu-1 bound (one RANGE row)."""
    path = db
    with Store.open(path) as store:
        store.add_patient("P1", tz="UTC")
        store.add_staff("da1", "Device Admin", "device_admin")
        store.add_device("tono-1", "bp")
        store.add_device("glu-1", "glu")
        store.bind("glu-1", "P1", 0)
        Ingest(store).process([
            Received("pmp/v1/dev/tono-1/m", msgpack.packb([bp(0), bp(1)]), 1, 1, 1, NOW),
            Received("pmp/v1/dev/glu-1/m", msgpack.packb({"seq": 0, "t": NOW - 1000, "type": "glu", "glu": 90}),
                     2, 1, 1, NOW)], NOW)
    return str(path)


def pmpgw(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def listed(capsys, db, *args):
    code, out, _ = pmpgw(capsys, "quarantine", "--json", "--db", db, *args)
    assert code == 0
    return json.loads(out)


def test_list_filters_by_reason_device_and_pending(capsys, db):
    assert [(r["device"], r["reason"]) for r in listed(capsys, db)] == [("tono-1", "UNBOUND"), ("tono-1", "UNBOUND"),
                                                                      ("glu-1", "RANGE")]
    assert [r["seq"] for r in listed(capsys, db, "--reason", "UNBOUND")] == [0, 1]
    assert [r["reason"] for r in listed(capsys, db, "--device", "glu-1")] == ["RANGE"]
    assert listed(capsys, db, "--reason", "STALE") == []
    with Store.open(db) as store:
        store.bind("tono-1", "P1", 0)
    assert pmpgw(capsys, "quarantine", "replay", "--reason", "UNBOUND", "--db", db)[0] == 0
    assert [r["reason"] for r in listed(capsys, db, "--pending")] == ["RANGE"]
    assert [r["replayed"] is not None for r in listed(capsys, db)] == [True, True, False]
    code, table, _ = pmpgw(capsys, "quarantine", "--device", "tono-1", "--db", db)
    assert code == 0 and table.splitlines()[0].split()[-2:] == ["replayed", "detail"]
    assert "Z" in table.splitlines()[1] and table.rstrip().endswith("(2 rows)")


def test_replay_without_a_gateway_runs_here_and_is_listed_with_its_counts(capsys, db):
    with Store.open(db) as store:
        store.bind("tono-1", "P1", 0)
    code, out, err = pmpgw(capsys, "quarantine", "replay", "--by", "da1", "--db", db)
    assert code == 0, err
    assert "replayed 3 quarantined rows: stored 2, already stored 0, still quarantined: RANGE 1" in out
    assert "not published: no gateway runs" in out
    code, out, _ = pmpgw(capsys, "quarantine", "--db", db, "replay", "--json")  # options before the action count
    result = json.loads(out)
    assert (result["rows"], result["stored"], result["still"], result["run_by"]) == (1, 0, {"RANGE": 1}, "cli")
    code, out, _ = pmpgw(capsys, "quarantine", "replays", "--json", "--db", db)
    assert [(r["actor"], r["detail"]["rows"], r["detail"]["stored"]) for r in json.loads(out)] == [("cli", 1, 0),
                                                                                                ("da1", 3, 2)]
    code, table, _ = pmpgw(capsys, "quarantine", "replays", "--db", db)
    assert table.splitlines()[0].split()[:3] == ["at", "actor", "device"] and "RANGE 1" in table


def test_replay_errors_name_their_reason(capsys, db):
    code, _, err = pmpgw(capsys, "quarantine", "replay", "--shift", "+1d", "--db", db)
    assert code == 2 and err.startswith("pmpgw: INVALID: --shift")
    code, _, err = pmpgw(capsys, "quarantine", "replay", "--by", "nobody", "--db", db)
    assert code == 2 and err.startswith("pmpgw: UNKNOWN: staff member 'nobody'")
    code, _, err = pmpgw(capsys, "quarantine", "replay", "--device", "tono-9", "--db", db)
    assert code == 2 and err.startswith("pmpgw: UNKNOWN: device 'tono-9'")
    with pytest.raises(SystemExit):
        main(["quarantine", "replay", "--shift", "3 days", "--db", db])
    assert "not a duration" in capsys.readouterr().err


def test_a_held_writer_lock_queues_for_a_gateway_but_refuses_beside_another_replay(capsys, db):
    sqlite_only(db)
    with replay.writer_lock(db, replay.REPLAY_HOLDER):
        code, _, err = pmpgw(capsys, "quarantine", "replay", "--db", db)
    assert code == 2 and err.startswith("pmpgw: LOCKED: pmpgw quarantine replay (pid ")
    with replay.writer_lock(db, replay.GATEWAY_HOLDER):  # as if a gateway ran, which never answers
        code, _, err = pmpgw(capsys, "quarantine", "replay", "--wait", "0.3", "--db", db)
    assert code == 2 and "pmpgw: TIMEOUT: the gateway has not finished replay request 1" in err
    with Store.open(db) as store:
        assert store.pending_replay_request()["id"] == 1  # still queued, for the next gateway


def test_with_a_gateway_running_the_replay_is_run_by_it_and_a_second_gateway_is_refused(db):
    sqlite_only(db)
    gateway = subprocess.Popen(PMPGW + ["run", "--db", db], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = f"{db.rsplit('/', 1)[0]}/broker/address"
        deadline = time.monotonic() + 30
        while not os.path.exists(address) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run(PMPGW + ["run", "--db", db], capture_output=True, text=True, timeout=30)
        assert second.returncode == 2 and "pmpgw: LOCKED:" in second.stderr and "pmpgw run (pid" in second.stderr
        with Store.open(db) as store:
            store.bind("tono-1", "P1", 0)
        replayed = subprocess.run(PMPGW + ["quarantine", "replay", "--reason", "UNBOUND", "--by", "da1", "--json",
                                           "--wait", "20", "--db", db], capture_output=True, text=True, timeout=60)
        assert replayed.returncode == 0, replayed.stderr
        assert "queued for it" in replayed.stderr
        result = json.loads(replayed.stdout)
        assert (result["run_by"], result["rows"], result["stored"]) == ("gateway", 2, 2)
        with Store.open(db) as store:
            assert [r["seq"] for r in store.readings("P1") if r["type"] == "bp"] == [0, 1]
    finally:
        gateway.send_signal(signal.SIGTERM)
        _, err = gateway.communicate(timeout=30)
    assert gateway.returncode == 0, err
