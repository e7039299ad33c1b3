"""store.shared_windows: what adding each batch's daily window sums to the store costs
(gateways sharing a store, ``pmpgw run --shared``, ``gateway.shared_windows``).

value    rows/s through ``Store.commit_batch`` with ``day_sums``: the sums of the rows the
         transaction stored are computed (``shared_windows.day_sums``, the core's
         WindowState on a fresh state of the batch's patients) and added to window_days by
         the upsert that adds, in the batch's transaction;
baseline rows/s of the same batches without (a single gateway's path).

store.shared_day_close_pg: patients/s of a day close through the store (``commit_batch``
``day_close``: claim every patient's closed day, read its RING_DAYS days of sums, rebuild
a WindowState and evaluate the window rules) of every patient at once, as at a zone's
midnight, against the compiled kernel's close of the same patients in memory
(``WindowState.close_days``, a single gateway's path; its alerts are not committed here).

Batches of 5,000 processed readings of 10,000 patients over 14 days (as
bench.store_insert_ceiling): nearly every reading is its own (patient, metric, day), the
upsert's worst case (a CGM's batch of one patient-day is one row). On PostgreSQL (private
cluster, synchronous_commit on) and on SQLite (WAL, synchronous=FULL); every run starts
from a new database.
"""

from __future__ import annotations

import functools
import itertools
import pathlib
import tempfile
import time

import numpy as np

import core
from bench._harness import Result, best_seconds
from bench.pg_cluster import private_cluster
from bench.store_insert_ceiling import BATCH, PROJECT_DIR, _processed
from core.codes import Reason
from core.rule_tables import default_thresholds
from core.window_layout import DAY_MS
from gateway import shared_windows
from gateway.store import DayClose, Store


def _day_sums(batch: np.ndarray, tz_min: np.ndarray, thresholds: np.ndarray, stored: np.ndarray) -> np.ndarray:
    return shared_windows.day_sums(core.implementation, batch[stored], tz_min, thresholds)


def run(quick: bool) -> list[Result]:
    batch = _processed(50_000 if quick else 200_000)
    now_ms = int(batch["rx"].max())
    stored = int((batch["reason"] == Reason.OK).sum())
    n_patients = int(batch["patient"].max()) + 1
    tz_min, thresholds = np.zeros(n_patients, dtype=np.int16), default_thresholds(n_patients)
    repeat = 2 if quick else 3
    names = itertools.count()
    work: dict = {}

    def commit_all(shared: bool) -> None:
        store = work.pop("store")
        for start in range(0, len(batch), BATCH):
            part = batch[start:start + BATCH]
            sums = functools.partial(_day_sums, part, tz_min, thresholds) if shared else None
            store.commit_batch(part, now_ms=now_ms, day_sums=sums)
        store.close()

    def rates(fresh) -> tuple[float, float]:
        plain = stored / best_seconds(functools.partial(commit_all, False), repeat=repeat, setup=fresh)
        shared = stored / best_seconds(functools.partial(commit_all, True), repeat=repeat, setup=fresh)
        return shared, plain

    results = []
    note = f"{stored:,} readings stored of {len(batch):,}, batches of {BATCH:,}, {n_patients:,} patients over 14 days"
    with tempfile.TemporaryDirectory(dir=PROJECT_DIR, prefix=".bench-store-") as tmp:
        def fresh_sqlite() -> None:
            work["store"] = Store.open(pathlib.Path(tmp) / f"store{next(names)}.db", synchronous="FULL")

        shared, plain = rates(fresh_sqlite)
        results.append(Result("store.shared_windows_sqlite", "rows/s", shared, "without window sums", plain,
                              note=note + "; SQLite WAL synchronous=FULL"))
    with private_cluster() as cluster:
        def fresh_pg() -> None:
            work["store"] = Store.open(cluster.create_database(f"bench{next(names)}"), synchronous="FULL")

        shared, plain = rates(fresh_pg)
        results.append(Result("store.shared_windows_pg", "rows/s", shared, "without window sums", plain,
                              note=note + "; PostgreSQL 15 private cluster, synchronous_commit on"))
        fresh_pg()
        store = work.pop("store")
        for start in range(0, len(batch), BATCH):
            part = batch[start:start + BATCH]
            store.commit_batch(part, now_ms=now_ms, day_sums=functools.partial(_day_sums, part, tz_min, thresholds))
        patients = np.arange(n_patients, dtype=np.int32)
        days = np.full(n_patients, now_ms // DAY_MS - 1, dtype=np.int32)
        raised = []

        def evaluate(claimed, claimed_days, sums):
            raised.append(shared_windows.close_days(core.implementation, claimed, claimed_days, sums, tz_min,
                                                    thresholds))
            return []

        started = time.perf_counter()  # once: a close claims its days, the next finds them claimed
        store.commit_batch(batch[:0], now_ms=now_ms, day_close=DayClose(patients, days, evaluate))
        through_store = n_patients / (time.perf_counter() - started)
        store.close()
    state = core.implementation.WindowState(n_patients, tz_min)
    state.update(batch, thresholds)
    in_memory = n_patients / best_seconds(lambda: state.close_days(patients, days, thresholds), repeat=repeat)
    assert len(state.close_days(patients, days, thresholds)) == len(raised[0]), "the two closes disagree"
    results.append(Result("store.shared_day_close_pg", "patients/s", through_store, "in memory (kernel)",
                          in_memory, note=f"{n_patients:,} patients closing at once, {len(raised[0]):,} alerts "
                                          "(evaluated, not committed)"))
    return results
