"""Issue 6, 1c: the disk fills. The database and its WAL live on a small tmpfs of their own;
a filler file takes its last free byte while re-sending devices publish. The gateway must
stop acking (nothing acked that is not committed), stay up, say why (DISK_FULL, the
database and its free bytes) in its retained stats, in ``pmpgw status --json`` and once
in its log, lose nothing, and resume by itself when the filler goes. The machinery is
``bench.faults_disk_full`` (also ``python -m bench --only faults_disk_full``).

The second test drives every other job of the writer thread into the full disk in
process: each is refused with DISK_FULL, changes nothing (in the store or in memory), and
succeeds once space returns. Both need root for ``mount -t tmpfs``; they skip without it.

PMP_FAULT_DEVICES (default 24), PMP_FAULT_SEED (default 1).
"""

from __future__ import annotations

import os
import pathlib
import sqlite3

import msgpack
import numpy as np
import pytest

from bench.faults_disk_full import MountRefused, fill, run_disk_full, summary, tmpfs
from gateway.store import Store, StoreError

DEVICES = int(os.environ.get("PMP_FAULT_DEVICES", "24"))
SEED = int(os.environ.get("PMP_FAULT_SEED", "1"))


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs in the test's directory (skips where mounting is not permitted)."""
    try:
        with tmpfs(tmp_path / "disk", 4 << 20) as disk:
            yield disk
    except MountRefused as error:
        pytest.skip(f"needs a tmpfs of its own (run as root): {error}")


def test_a_full_disk_holds_acks_back_says_why_and_resumes_losing_nothing(broker, tmp_path):
    try:
        run = run_disk_full(broker.port, tmp_path, devices=DEVICES, run_before_s=2.0, full_hold_s=4.0, seed=SEED)
    except MountRefused as error:
        pytest.skip(f"needs a tmpfs of its own (run as root): {error}")
    print(summary(run))
    for line in run.log_excerpt:
        print("log:", line)
    check = run.check
    # While full: no ack at all, none for a reading the store did not hold, the gateway up.
    assert run.acks_while_full == 0 and run.acked_unstored == []
    assert run.alive_while_full and run.withheld > 0 and run.held_messages > 0
    # Why, in the retained stats ...
    fault = run.fault
    assert fault["reason"] == "DISK_FULL" and "batch" in fault["jobs"] and fault["refusals"] >= 1
    assert fault["path"].endswith("pmp.db") and fault["free_bytes"] < 1 << 20
    assert "no space left for the database" in fault["message"] and fault["path"] in fault["message"]
    # ... in pmpgw status --json (live stats from the broker; free bytes read by status itself) ...
    status = run.status
    assert status["gw"] == "diskfull" and status["state"] == "up"
    assert status["store_fault"]["reason"] == "DISK_FULL" and status["store_error"].startswith("DISK_FULL: ")
    assert status["disk_free_bytes"] < 1 << 20
    # ... and in the log, once when it started and once when it ended, not per retry.
    assert (run.refused_lines, run.resumed_lines) == (1, 1), run.log_excerpt
    assert "DISK_FULL" in run.log_excerpt[0] and fault["path"] in run.log_excerpt[0]
    # Resumed by itself; every reading stored once, every crisis alerted once, all acked.
    assert run.exit_code == 0
    assert check.violations == []
    assert (check.lost, check.duplicated, check.wrong_values) == (0, 0, 0), check.examples
    assert check.stored == check.generated > 0 and check.counters["stored"] == check.generated
    assert check.crisis_readings > 0
    assert (check.crisis_not_alerted, check.crisis_alerted_twice, check.alerted_not_crisis) == (0, 0, 0), \
        check.examples
    assert check.crisis_alert_rows_extra == 0 and check.occurrences_mismatch == 0, check.examples
    assert check.quarantined == {}, check.counters


def test_every_writer_job_refused_by_a_full_disk_changes_nothing_and_runs_once_space_returns(small_disk, caplog):
    """Each job of the writer thread, refused by the full disk: DISK_FULL, nothing changed
    in the store or in memory (acks, dedup, registry, closed days, activity), the file
    intact; told once (``StoreHealth``), which sees the space return; each job then runs."""
    import logging

    from adapters.mqtt import Received
    from gateway.clock import now_ms
    from gateway.ingest import DAY_MS, Ingest
    from gateway.store_health import StoreHealth

    caplog.set_level(logging.INFO, logger="pmpgw")

    now = now_ms()
    db = small_disk / "pmp.db"

    def message(seqs, mid, device="tono-1"):
        return Received(f"pmp/v1/dev/{device}/m", msgpack.packb(
            [{"seq": s, "t": now - 60_000 + s, "type": "bp", "sys": 185 if s % 2 else 120, "dia": 80} for s in seqs]),
            mid, 1, 1, now)

    today = now // DAY_MS
    week = [{"seq": s, "t": (today - 7 + s // 4) * DAY_MS + 8 * 3_600_000 + s % 4 * 60_000, "type": "bp",
             "sys": 150, "dia": 95} for s in range(28)]  # home BP over 135/85 all week: BP_HOME_HIGH at day close

    with Store.open(db) as store:
        store.add_patient("P1", tz="UTC")
        store.add_device("tono-1", "bp")
        store.bind("tono-1", "P1", 0)
        ingest = Ingest(store)
        first = ingest.process([Received("pmp/v1/dev/tono-1/m", msgpack.packb(week), 1, 1, 1, now),
                                message(range(28, 32), 2)], now)
        assert ("pmp/v1/dev/tono-1/ack", b'{"seq": 31}') in first.publications
        ingest.closed_day = ingest.closed_day - 1  # a day to close
        before = {"counters": store.counters(), "acks": store.publisher_acks("dev"), "readings": len(store.readings()),
                  "closed_day": ingest.closed_day.copy(), "activity_through": ingest.activity.through,
                  "dedup": len(ingest.pipeline.dedup), "devices": store.device_index()}
        health = StoreHealth(store)
        # Checkpoint and empty the WAL file: a commit can reuse the space a WAL file still
        # holds (as the gateway does right after the disk fills, legitimately: what it commits
        # it may ack); here every write is to need new space.
        other = sqlite3.connect(db)
        assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        other.close()
        filler = fill(small_disk)
        jobs = {
            "batch": lambda: ingest.process([message(range(32, 400), 3)], now),
            "unknown publisher": lambda: ingest.process([message(range(3), 4, device="stranger-1")], now),
            "windows": ingest.save_windows,
            "day close": lambda: ingest.close_days(now),
            "sweep": lambda: ingest.sweep(now + 8 * DAY_MS),
            "escalation": lambda: store.escalate_alerts(now + DAY_MS),
            "stats": lambda: store.save_gateway_stats({"gw": "gw1", "state": "up"}),
        }
        for name, job in jobs.items():
            with pytest.raises(StoreError) as refused:
                job()
                pytest.fail(f"{name}: not refused")
            assert refused.value.reason == "DISK_FULL", (name, refused.value)
            health.refused(name, refused.value)
        fault = health.fault(held_messages=1)
        assert fault["jobs"] == sorted(jobs) and fault["refusals"] == len(jobs) and fault["free_bytes"] < 1 << 20
        assert not health.space_returned()
        after = {"counters": store.counters(), "acks": store.publisher_acks("dev"), "readings": len(store.readings()),
                 "closed_day": ingest.closed_day.copy(), "activity_through": ingest.activity.through,
                 "dedup": len(ingest.pipeline.dedup), "devices": store.device_index()}
        assert after.keys() == before.keys()
        assert all(np.array_equal(after[k], before[k]) if k == "closed_day" else after[k] == before[k] for k in after)
        assert ingest.device_acks.acked("tono-1") == 31  # nothing acked for the refused batch
        assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)

        filler.unlink()
        assert health.space_returned()
        retried = ingest.process([message(range(32, 400), 3)], now)
        assert (retried.result.stored, retried.result.duplicate) == (368, 0)
        assert ("pmp/v1/dev/tono-1/ack", b'{"seq": 399}') in retried.publications
        assert store.publisher_acks("dev") == {"tono-1": 399}  # saved with the batch
        stranger = ingest.process([message(range(3), 4, device="stranger-1")], now)
        assert stranger.result.quarantined == {"UNBOUND": 3} and "stranger-1" in store.device_index()
        ingest.save_windows()
        assert ingest.activity.through == store.count_readings() == 400
        assert [a["rule"] for a in ingest.close_days(now).result.alerts] == ["BP_HOME_HIGH"]
        assert (ingest.closed_day == before["closed_day"] + 1).all()
        ingest.sweep(now + 8 * DAY_MS)
        store.escalate_alerts(now + DAY_MS)
        store.save_gateway_stats({"gw": "gw1", "state": "up"})
        assert [r["seq"] for r in store.readings("P1", limit=1000)] == list(range(400))
        assert len(store.alerts(patient="P1", state="open")) >= 1
        for name in jobs:
            health.ok(name)
        assert health.episode is None and health.last_error == ""
        told = [r.getMessage() for r in caplog.records if r.name == "pmpgw"]
        assert len(told) == 2, told  # once when refused (7 jobs), once when all ran again
        assert told[0].startswith("store refuses writes: DISK_FULL: ") and str(db) in told[0]
        assert told[1].startswith("store accepts writes again") and f"{len(jobs)} refusals" in told[1]
        assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_opening_a_database_on_a_full_disk_says_disk_full_not_io_error(small_disk, capsys):
    """The first process to open a WAL database (none had it open: a gateway starting, or
    ``pmpgw status`` with the gateway stopped) creates its WAL index (``-shm``); on a full disk
    SQLite reports that as SQLITE_IOERR_SHMSIZE ("disk I/O error"), which the store names
    DISK_FULL with the database and the free bytes, like SQLITE_FULL; with space it opens."""
    from gateway.cli import main

    db = small_disk / "pmp.db"
    with Store.open(db) as store:
        store.add_patient("P1", tz="UTC")
    filler = fill(small_disk)
    assert main(["status", "--json", "--db", str(db)]) == 2
    said = capsys.readouterr().err
    assert said.startswith("pmpgw: DISK_FULL: no space left for the database") and f"{db}: 0 bytes free" in said
    assert "SQLITE_IOERR_SHMSIZE" in said
    filler.unlink()
    assert main(["status", "--json", "--db", str(db)]) == 0


def test_on_a_nearly_full_disk_the_wal_is_kept_small_so_returned_space_is_not_refilled_by_it(small_disk):
    """With less free than WAL_HEADROOM_BYTES the store checkpoints after every commit and
    the WAL is cut back to TIGHT_WAL_BYTES: it never grows towards its usual ~40 MB, which a
    checkpoint could no longer copy into the database file once the disk is full (bench
    faults.disk_full found a 32 MiB disk refilled by WAL within seconds of 20 MB freed)."""
    from adapters.mqtt import Received
    from gateway.clock import now_ms
    from gateway.ingest import Ingest
    from gateway.store.store import TIGHT_WAL_BYTES, WAL_HEADROOM_BYTES

    now = now_ms()
    db = small_disk / "pmp.db"
    wal = pathlib.Path(f"{db}-wal")
    with Store.open(db) as store:
        assert store.disk_free_bytes() < WAL_HEADROOM_BYTES
        store.add_patient("P1", tz="UTC")
        store.add_device("tono-1", "bp")
        store.bind("tono-1", "P1", 0)
        ingest = Ingest(store)
        largest = 0
        for i in range(40):  # 20,000 readings: about 2.7 MB of pages, whose WAL would fill the 4 MiB disk
            readings = [{"seq": s, "t": now - 3_600_000 + s, "type": "bp", "sys": 120 + s % 40, "dia": 80}
                        for s in range(500 * i, 500 * (i + 1))]
            ingest.process([Received("pmp/v1/dev/tono-1/m", msgpack.packb(readings), i + 1, 1, 1, now)], now)
            largest = max(largest, wal.stat().st_size)
        assert store.count_readings() == 20_000
        print(f"largest WAL {largest:,} bytes; database {db.stat().st_size:,} bytes; free {store.disk_free_bytes():,}")
        assert largest <= 2 * TIGHT_WAL_BYTES
