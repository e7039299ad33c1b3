"""store.shared_acks: what the acks of gateways sharing a database (``pmpgw run --shared``)
cost a batch's transaction, on PostgreSQL and SQLite.

value    ms per ``Store.commit_batch`` with ``ack_seqs`` (the store advances each
         publisher's ack over what every gateway committed: Store._advance_acks), batches
         carrying one sequence number of each of PUBLISHERS publishers, committed in turn by
         two connections (as two gateways of a shared subscription group: each one's seqs
         of a publisher have gaps the other fills);
baseline ms per ``commit_batch`` of the same (empty) batches without acks.

Readings are left out (empty batches): the figure is the ack step alone, to add to a
batch's commit (``store.pg_insert``: about 7 ms for 500 readings on PostgreSQL).
"""

from __future__ import annotations

import pathlib
import tempfile
import time

import numpy as np

import core
from bench._harness import Result
from bench.pg_cluster import private_cluster
from gateway.store import Store

PUBLISHERS = 500  # a batch of 500 messages (ServiceSettings.batch_max), each of another device
NOW_MS = 1_767_225_600_000


def ms_per_batch(db: str, batches: int, *, acks: bool) -> float:
    """Mean ms of ``batches`` commits, alternating between two connections to ``db``."""
    names = [f"dev-{p:05d}" for p in range(PUBLISHERS)]
    with Store.open(db) as first, Store.open(db) as second:
        started = time.perf_counter()
        for seq in range(batches):
            ack_seqs = {"dev": {name: np.array([seq], dtype=np.int64) for name in names}} if acks else None
            (first, second)[seq % 2].commit_batch(core.empty_batch(0), now_ms=NOW_MS, ack_seqs=ack_seqs)
        return (time.perf_counter() - started) / batches * 1000


def run(quick: bool) -> list[Result]:
    batches = 40 if quick else 200
    results = []
    with tempfile.TemporaryDirectory(prefix="pmp-shared-acks-") as tmp, private_cluster() as cluster:
        for name, db in (("pg", lambda kind: cluster.create_database(f"acks_{kind}")),
                         ("sqlite", lambda kind: str(pathlib.Path(tmp) / f"acks_{kind}.db"))):
            with_acks = ms_per_batch(db("with"), batches, acks=True)
            without = ms_per_batch(db("without"), batches, acks=False)
            results.append(Result(f"store.shared_acks_{name}", "ms/batch", with_acks, "same batches without acks",
                                  without, note=f"{PUBLISHERS} publishers a batch, one seq each, {batches} batches "
                                                "by two connections in turn"))
    return results
