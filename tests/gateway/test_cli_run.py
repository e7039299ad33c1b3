"""``pmpgw run`` on its embedded defaults, ``simulate`` against it, then the query commands,
on an SQLite file and on a PostgreSQL database (``--db postgresql://...``, data directory
$PMP_DATA_DIR)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

PMPGW = [sys.executable, "-m", "gateway.cli"]


@pytest.fixture
def data(db, tmp_path, monkeypatch):
    """The data directory of ``db`` (an SQLite file in it, or $PMP_DATA_DIR for PostgreSQL),
    and ``db`` itself."""
    folder = tmp_path / "data"
    monkeypatch.setenv("PMP_DATA_DIR", str(folder))
    return folder, (db if db.startswith("postgresql://") else str(folder / "pmp.db"))


def pmpgw(*args, db):
    return subprocess.run(PMPGW + list(args) + ["--db", str(db)], capture_output=True, text=True, timeout=120,
                          env=os.environ)


def test_run_simulate_status_and_drain(data):
    folder, db = data
    gateway = subprocess.Popen(PMPGW + ["run", "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        address = folder / "broker" / "address"
        deadline = time.monotonic() + 30
        while not address.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        simulated = pmpgw("simulate", "--patients", "20", "--days", "1", db=db)
        assert simulated.returncode == 0, simulated.stderr
        outcome = json.loads(simulated.stdout)
        published = outcome["published"]
        # Each device and hub logged in with the account simulate issued it, and was let publish.
        assert (outcome["denied"], outcome["failed"], outcome["refused_connections"]) == (0, 0, [])
        assert outcome["gateway_acked"] > 0 and outcome["ack_pending"] == []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = json.loads(pmpgw("status", "--json", db=db).stdout)
            if status["readings"]["received"] and status["readings"]["stored"] > 0:
                break
            time.sleep(0.2)
        assert published > 0 and status["readings"]["stored"] > 0
        deadline = time.monotonic() + 15
        while not status["gateways"] and time.monotonic() < deadline:
            status = json.loads(pmpgw("status", "--json", db=db).stdout)
        assert status["gateways"][0]["gw"] == "gw1"  # the running gateway's retained stats
        assert status["gw"] == "gw1" and status["state"] == "up"
    finally:
        gateway.send_signal(signal.SIGTERM)
        out, err = gateway.communicate(timeout=30)
    assert gateway.returncode == 0, err
    assert json.loads(out)["gw"] == "gw1"
    stopped = json.loads(pmpgw("status", "--json", db=db).stdout)  # the stats the gateway saved at drain
    assert stopped["gw"] == "gw1" and stopped["state"] == "down" and stopped["up_s"] > 0
    assert stopped["readings"]["stored"] >= status["readings"]["stored"] and stopped["db_bytes"] > 0
    assert {"rate_1m", "batch", "alerts_open", "queue_depth"} <= set(stopped)
    assert not (folder / "broker" / "address").exists()
    readings = json.loads(pmpgw("readings", "--json", db=db).stdout)
    assert readings and {"device", "patient", "seq", "t", "type", "sys", "dia", "pul", "glu"} <= set(readings[0])


def test_registry_commands_and_their_errors(data):
    _, db = data
    assert pmpgw("patients", "add", "P1", "--programme", "AH,DM2", db=db).returncode == 0
    assert pmpgw("devices", "add", "tono-1", "--kind", "bp", db=db).returncode == 0
    assert pmpgw("bind", "tono-1", "P1", "--from", "2026-01-01T00:00", db=db).returncode == 0
    again = pmpgw("bind", "tono-1", "P1", "--from", "2026-02-01T00:00", db=db)
    assert again.returncode == 2 and "OVERLAP" in again.stderr
    bad = pmpgw("devices", "add", "bad/id", "--kind", "bp", db=db)
    assert bad.returncode == 2 and "INVALID" in bad.stderr
    assert json.loads(pmpgw("alerts", "--json", db=db).stdout) == []
    never_ran = json.loads(pmpgw("status", "--json", db=db).stdout)
    assert never_ran["gw"] is None and never_ran["state"] == "down" and never_ran["readings"]["stored"] == 0
