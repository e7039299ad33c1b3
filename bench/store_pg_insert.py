"""store.pg_insert: readings stored per second through ``Store.commit_batch`` on PostgreSQL
(private cluster on this machine, synchronous_commit on, fsync on), each way of inserting a
batch's readings, against the same batches on SQLite (WAL, synchronous=FULL).

value    rows/s through ``PgStore.commit_batch`` with ``insert_method``:
         "unnest": INSERT ... SELECT FROM unnest(one array parameter per column) ... ON
         CONFLICT DO NOTHING RETURNING, the whole batch in one statement (the store's choice);
         "values": multi-row INSERT ... VALUES ... ON CONFLICT DO NOTHING RETURNING, 1,000
         rows (13,000 parameters) a statement;
         "copy": COPY into a temporary table, then INSERT ... SELECT ... ON CONFLICT DO
         NOTHING RETURNING;
baseline rows/s of the same batches through the SQLite ``Store.commit_batch``.

Batches of 5,000 processed readings (as bench.store_insert_ceiling), each one transaction;
every run starts from a new database.
"""

from __future__ import annotations

import itertools
import pathlib
import tempfile

from bench._harness import Result, best_seconds
from bench.pg_cluster import private_cluster
from bench.store_insert_ceiling import BATCH, PROJECT_DIR, _processed
from core.codes import Reason
from gateway.store import Store

METHODS = ("unnest", "values", "copy")


def run(quick: bool) -> list[Result]:
    batch = _processed(50_000 if quick else 200_000)
    now_ms = int(batch["rx"].max())
    stored = int((batch["reason"] == Reason.OK).sum())
    repeat = 2 if quick else 3
    names = itertools.count()
    work: dict = {}

    def commit_all() -> None:
        store = work.pop("store")
        for start in range(0, len(batch), BATCH):
            store.commit_batch(batch[start:start + BATCH], now_ms=now_ms)
        store.close()

    with tempfile.TemporaryDirectory(dir=PROJECT_DIR, prefix=".bench-store-") as tmp:
        def fresh_sqlite() -> None:
            work["store"] = Store.open(pathlib.Path(tmp) / f"store{next(names)}.db", synchronous="FULL")

        sqlite_rate = stored / best_seconds(commit_all, repeat=repeat, setup=fresh_sqlite)
    results = []
    with private_cluster() as cluster:
        for method in METHODS:
            def fresh_pg() -> None:
                store = Store.open(cluster.create_database(f"bench{next(names)}"), synchronous="FULL")
                store.insert_method = method
                work["store"] = store

            rate = stored / best_seconds(commit_all, repeat=repeat, setup=fresh_pg)
            results.append(Result(f"store.pg_insert_{method}", "rows/s", rate, "SQLite Store, same batches",
                                  sqlite_rate, note=f"{stored:,} readings stored of {len(batch):,}, batches of "
                                                    f"{BATCH:,}, PostgreSQL 15 private cluster, synchronous_commit "
                                                    "on; SQLite WAL synchronous=FULL"))
    return results
