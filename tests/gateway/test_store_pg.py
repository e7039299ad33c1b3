"""gateway.store on PostgreSQL only: its schema against SQLite's, errors, and the invariants
when several gateways (Store connections, in threads) write one database at once.

Everything else the store does runs on both databases in tests/gateway/test_store.py.
"""

import sqlite3
import threading

import numpy as np
import psycopg
import pytest

import core
from core.codes import Flag, Kind, Reason
from gateway.broker import free_port
from gateway.store import Store, StoreError
from gateway.store.sql import MIGRATIONS
from tests.gateway.test_store import NOW, crisis_alert, reading, registry

ROUNDS = 5
BATCH = 400


def test_a_new_database_gets_the_same_tables_columns_and_indexes_as_sqlite(pg_cluster, tmp_path):
    url = pg_cluster.create_database("pmp_schema_check")
    with Store.open(url) as store:
        assert store.schema_version() == MIGRATIONS[-1][0]
        store.add_device("D0", "glu")
    with Store.open(url, synchronous="NORMAL") as store:
        assert store.device_index() == {"D0": 0}
    with psycopg.connect(url) as conn:
        migrations = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        pg_columns = set(conn.execute("SELECT table_name, column_name FROM information_schema.columns "
                                      "WHERE table_schema = 'public'").fetchall())
        pg_indexes = {name for (name,) in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
                                                       "AND indexname NOT LIKE '%pkey' AND indexname NOT LIKE '%key'")}
    assert migrations == [(version, name) for version, name, _ in MIGRATIONS]
    Store.open(tmp_path / "pmp.db").close()
    lite = sqlite3.connect(tmp_path / "pmp.db")
    tables = [name for (name,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    lite_columns = {(table, row[1]) for table in tables for row in lite.execute(f"PRAGMA table_info({table})")}
    lite_indexes = {name for (name,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                                     "AND name NOT LIKE 'sqlite_autoindex%'")}
    lite.close()
    assert pg_columns == lite_columns
    assert pg_indexes == lite_indexes


def test_newer_schema_is_refused(pg_url):
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    with pytest.raises(StoreError, match="upgrade pmp-gateway") as info:
        Store.open(pg_url)
    assert info.value.reason == "SCHEMA"


def test_no_server_is_cantopen_and_a_lock_held_past_the_timeout_is_locked(pg_url):
    with pytest.raises(StoreError, match="cannot reach the database server") as info:
        Store.open(f"postgresql://pmp@127.0.0.1:{free_port()}/pmp")
    assert info.value.reason == "CANTOPEN"
    with Store.open(pg_url, busy_timeout_ms=50) as store, psycopg.connect(pg_url) as other:
        registry(store, 1)
        other.execute("LOCK TABLE kv IN EXCLUSIVE MODE")  # held until other's transaction ends
        with pytest.raises(StoreError, match="busy timeout") as info:
            store.commit_batch(reading(Kind.BP, (120, 80, np.nan, 70)), now_ms=NOW)
        assert info.value.reason == "LOCKED"
        other.rollback()
        assert store.readings("P0") == [] and store.counters()["received"] == 0
        assert store.commit_batch(reading(Kind.BP, (120, 80, np.nan, 70)), now_ms=NOW).stored == 1


def together(*jobs):
    """Run each job in its own thread, started at one barrier; return their results in order
    (re-raising the first exception)."""
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)

    def run(i, job):
        barrier.wait(timeout=30)
        try:
            results[i] = job()
        except BaseException as error:  # handed to the test's thread
            results[i] = error

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a commit did not finish within 60 s"
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


def bp_batch(seqs, device=0):
    """OK bp readings of device 0 (patient 0) with these sequence numbers (their dedup keys)."""
    batch = core.empty_batch(len(seqs))
    batch["kind"], batch["device"], batch["patient"], batch["reason"] = Kind.BP, device, device, Reason.OK
    batch["seq"], batch["t"], batch["rx"] = seqs, NOW - 60_000, NOW
    batch["flags"] = Flag.HAS_TIME | Flag.HAS_SEQ
    batch["v"][:, 0], batch["v"][:, 1] = 120, 80
    batch["fingerprint"] = np.asarray(seqs, dtype=np.uint64) * 7 + 1
    return batch


def test_two_gateways_committing_overlapping_readings_at_once_store_each_once(pg_url):
    with Store.open(pg_url) as first, Store.open(pg_url) as second:
        registry(first, 1)
        rng = np.random.default_rng(7)
        for r in range(ROUNDS):
            # Half of each batch is in the other's too, in another order (a redelivery to both).
            base = r * BATCH * 3
            shared = np.arange(base, base + BATCH)
            a = np.concatenate([shared, np.arange(base + BATCH, base + BATCH + BATCH // 2)])
            b = np.concatenate([rng.permutation(shared), np.arange(base + 2 * BATCH, base + 2 * BATCH + BATCH // 2)])
            done = together(lambda: first.commit_batch(bp_batch(a), now_ms=NOW),
                            lambda: second.commit_batch(bp_batch(b), now_ms=NOW))
            assert sum(d.stored for d in done) == len(np.union1d(a, b))
            assert sum(d.duplicate for d in done) == BATCH
            for d, seqs in zip(done, (a, b)):
                assert (d.reading_ids >= 0).all()  # each row names its reading: new, or the other's
                assert set(d.reason.tolist()) <= {Reason.OK, Reason.DUPLICATE}
            assert np.array_equal(np.sort(done[0].reading_ids[:BATCH]),
                                  np.sort(done[1].reading_ids[np.argsort(b)[:BATCH]]))
        counters = first.counters()
        total = ROUNDS * (BATCH * 2)
        assert first.count_readings() == total
        assert (counters["received"], counters["stored"], counters["duplicate"]) == (
            total + ROUNDS * BATCH, total, ROUNDS * BATCH)
        keys = first.dedup_keys()
        assert len(np.unique(keys[["device", "tag", "key"]])) == len(keys) == total


def test_two_gateways_raising_the_same_alert_at_once_open_one(pg_url):
    with Store.open(pg_url) as first, Store.open(pg_url) as second:
        registry(first, 1)
        for r in range(ROUNDS):
            seq = 10 * r
            done = together(
                lambda: first.commit_batch(reading(Kind.BP, (185, 95, np.nan, 80), seq=seq + 1), now_ms=NOW,
                                           alerts=[crisis_alert([0])]),
                lambda: second.commit_batch(reading(Kind.BP, (186, 95, np.nan, 80), seq=seq + 2), now_ms=NOW,
                                            alerts=[crisis_alert([0])]))
            opened = [a for d in done for a in d.alerts]
            assert len(opened) == (1 if r == 0 else 0)  # raised by one, updated by the other within the cooldown
        [alert] = first.alerts()
        assert alert["state"] == "open" and alert["occurrences"] == 2 * ROUNDS
        assert len(alert["readings"]) == 2 * ROUNDS
        assert first.alerts_open() == {"emergency": 1}


def test_two_registrations_at_once_get_distinct_indexes(pg_url):
    with Store.open(pg_url) as first, Store.open(pg_url) as second:
        for r in range(ROUNDS):
            devices = together(lambda: first.add_device(f"A{r}", "bp"), lambda: second.add_device(f"B{r}", "glu"))
            patients = together(lambda: first.add_patient(f"PA{r}"), lambda: second.add_patient(f"PB{r}"))
            assert len(set(devices)) == len(set(patients)) == 2
        assert sorted(first.device_index().values()) == list(range(2 * ROUNDS))
        assert sorted(first.patient_index().values()) == list(range(2 * ROUNDS))


def test_a_connection_the_server_dropped_fails_one_call_and_the_next_reconnects(pg_url):
    with Store.open(pg_url) as store, psycopg.connect(pg_url, autocommit=True) as admin:
        registry(store, 1)
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid != pg_backend_pid()")
        with pytest.raises(StoreError) as info:
            store.commit_batch(reading(Kind.BP, (120, 80, np.nan, 70)), now_ms=NOW)
        assert info.value.reason == "CANTOPEN"
        assert store.commit_batch(reading(Kind.BP, (120, 80, np.nan, 70)), now_ms=NOW).stored == 1
        assert store.counters()["received"] == 1  # the refused batch wrote nothing
