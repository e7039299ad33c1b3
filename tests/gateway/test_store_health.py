"""StoreHealth: one log line when the store starts refusing, one when it takes every job's
writes again; the episode in the stats meanwhile. Errors are the store's own (a locked
database, a database at its page limit)."""

import logging
import sqlite3

import pytest

from gateway.store import Store, StoreError
from gateway.store_health import StoreHealth


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "pmp.db", busy_timeout_ms=20) as opened:
        yield opened


def refusal(store, blocker=None) -> StoreError:
    """A real StoreError of ``store``: LOCKED while ``blocker`` holds the database, else DISK_FULL
    (the database at its max_page_count)."""
    with pytest.raises(StoreError) as refused:
        store.save_gateway_stats({"gw": "gw1", "big": "x" * (0 if blocker else 200_000)})
    return refused.value


def test_an_episode_is_told_once_however_many_refusals_and_ends_when_every_job_ran(store, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pmpgw")
    health = StoreHealth(store)
    blocker = sqlite3.connect(tmp_path / "pmp.db")
    blocker.execute("BEGIN IMMEDIATE")
    locked = refusal(store, blocker)
    assert locked.reason == "LOCKED"
    for job in ("batch", "batch", "stats", "batch"):
        health.refused(job, locked)
    assert health.last_error.startswith("LOCKED: ")
    fault = health.fault(held_messages=3)
    assert (fault["reason"], fault["refusals"], fault["jobs"], fault["held_messages"]) == ("LOCKED", 4,
                                                                                         ["batch", "stats"], 3)
    assert fault["path"] == store.path and fault["free_bytes"] > 0
    assert not health.space_returned()  # not a full disk
    blocker.rollback()
    blocker.close()
    store._conn.execute(f"PRAGMA max_page_count = {store._conn.execute('PRAGMA page_count').fetchone()[0]}")
    full = refusal(store)
    assert full.reason == "DISK_FULL" and "bytes free on its disk" in str(full)
    health.refused("batch", full)  # the reason changed: told again
    assert not health.space_returned()  # the disk has as much space as at the refusal: no early retry
    health.ok("batch")
    assert health.episode is not None  # the stats were refused and have not been saved since
    health.ok("windows")  # a job that was never refused
    health.ok("stats")
    assert health.episode is None and health.fault(0) is None and health.last_error == ""
    health.ok("batch")  # healthy: nothing to tell
    told = [r.getMessage() for r in caplog.records if r.name == "pmpgw"]
    assert len(told) == 3, told
    assert told[0].startswith("store refuses writes: LOCKED: ") and "[first refused: batch;" in told[0]
    assert told[1].startswith("store refuses writes, now: DISK_FULL: ")
    assert told[2].startswith("store accepts writes again after ") and told[2].endswith("(DISK_FULL: 5 refusals)")
