"""store.insert_ceiling: how close does ``Store.commit_batch`` come to raw SQLite inserts of
the same rows, with the same schema, sync mode (FULL) and batch size (5,000 rows: what the
gateway commits at a time when devices send arrays of 50, its 256 KiB batch bound)?

value    rows/s stored through ``Store.commit_batch`` (columns built from the processed core
         batch with numpy, counters, one transaction per batch);
baseline rows/s of the same readings' parameters, built before timing, inserted with the
         store's own statements (multi-row INSERT of INSERT_CHUNK_ROWS rows, the rest one by
         one) into a database of the same schema, one transaction per batch: SQLite's ceiling
         for this schema, no core or column work.

Each run starts from an empty database in a temp dir on the project's disk (not tmpfs:
fsync must cost what it costs in production).
"""

from __future__ import annotations

import pathlib
import sqlite3
import tempfile

import numpy as np

import core.compiled
from bench._harness import Result, best_seconds
from bench.fleet import make_fleet
from core.codes import Reason
from core.pipeline import Pipeline
from gateway.store import Store, reading_params
from gateway.store.sql import INSERT_CHUNK_ROWS, INSERT_READING, INSERT_READINGS_CHUNK, PRAGMAS

BATCH = 5_000  # rows per transaction
PROJECT_DIR = pathlib.Path(__file__).resolve().parent.parent


def _processed(n: int) -> np.ndarray:
    """A fleet batch of n readings after the core pipeline (about 5 % DUPLICATE)."""
    fleet = make_fleet(n, 10_000)
    pipeline = Pipeline(core.compiled, n_patients=fleet.n_patients, tz_min=fleet.tz_min, bindings=fleet.bindings,
                        dedup_capacity=n)
    batch = fleet.batch.copy()
    pipeline.process(batch, fleet.now_ms)
    return batch


def run(quick: bool) -> list[Result]:
    batch = _processed(100_000 if quick else 300_000)
    now_ms = int(batch["rx"].max())
    ok = batch[batch["reason"] == Reason.OK]
    params = reading_params(ok)
    chunks = []  # per transaction: (flat values of the full multi-row chunks, rows of the rest)
    for start in range(0, len(params), BATCH):
        part = params[start:start + BATCH]
        full = len(part) - len(part) % INSERT_CHUNK_ROWS
        chunks.append((part[:full].ravel().tolist(), part[full:].tolist()))
    step = INSERT_CHUNK_ROWS * params.shape[1]
    work: dict = {}
    with tempfile.TemporaryDirectory(dir=PROJECT_DIR, prefix=".bench-store-") as tmp:
        counter = iter(range(1_000_000))

        def fresh_store() -> None:
            work["store"] = Store.open(pathlib.Path(tmp) / f"store{next(counter)}.db", synchronous="FULL")

        def through_store() -> None:
            store = work.pop("store")
            for start in range(0, len(batch), BATCH):
                store.commit_batch(batch[start:start + BATCH], now_ms=now_ms)
            store.close()

        def fresh_raw() -> None:
            path = pathlib.Path(tmp) / f"raw{next(counter)}.db"
            Store.open(path, synchronous="FULL").close()
            conn = sqlite3.connect(path, isolation_level=None)
            for pragma in PRAGMAS + ("PRAGMA synchronous = FULL",):
                conn.execute(pragma)
            work["conn"] = conn

        def raw() -> None:
            conn = work.pop("conn")
            for flat, rest in chunks:
                conn.execute("BEGIN IMMEDIATE")
                for at in range(0, len(flat), step):
                    conn.execute(INSERT_READINGS_CHUNK, flat[at:at + step])
                conn.executemany(INSERT_READING, rest)
                conn.execute("COMMIT")
            conn.close()

        repeat = 2 if quick else 3
        store_rate = len(ok) / best_seconds(through_store, repeat=repeat, setup=fresh_store)
        raw_rate = len(ok) / best_seconds(raw, repeat=repeat, setup=fresh_raw)
    note = (f"{len(ok):,} readings stored of {len(batch):,} (rest DUPLICATE), 10,000 patients, "
            f"batches of {BATCH:,}, WAL synchronous=FULL, fresh DB on the project disk; "
            f"UNIQUE(device, dedup_tag, dedup_key) the only index")
    return [Result("store.insert_ceiling", "rows/s", store_rate, "raw inserts, same schema", raw_rate,
                   note=note)]
