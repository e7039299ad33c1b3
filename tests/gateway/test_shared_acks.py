"""Acks of gateways sharing one database (``pmpgw run --shared``): advanced by the store, in
each batch's transaction, over the sequence numbers every gateway committed. On SQLite and
PostgreSQL (the ``db`` fixture)."""

import threading

import msgpack
import numpy as np
import pytest

import core
from adapters.mqtt import Received
from gateway.clock import now_ms
from gateway.ingest import Ingest
from gateway.store import Store
from tests.gateway.dbs import rows

NOW = now_ms()


def commit(store: Store, dev: dict | None = None, hub: dict | None = None) -> dict:
    """Commit an empty batch carrying these sequence numbers; the acks to publish."""
    ack_seqs = {"dev": {p: np.array(s, dtype=np.int64) for p, s in (dev or {}).items()},
                "hub": {p: np.array(s, dtype=np.int64) for p, s in (hub or {}).items()}}
    return store.commit_batch(core.empty_batch(0), now_ms=NOW, ack_seqs=ack_seqs).acks


@pytest.fixture
def two_stores(db):
    """Two connections to one database, as two gateways have."""
    with Store.open(db) as a, Store.open(db) as b:
        yield a, b, db


def test_two_gateways_interleaved_seqs_are_acked_together(two_stores):
    a, b, db = two_stores
    assert commit(a, dev={"tono-1": [0, 2, 4]}) == {"dev": {"tono-1": 0}}  # the first seq starts the count
    assert commit(b, dev={"tono-1": [1, 3, 5]}) == {"dev": {"tono-1": 5}}  # alone, b would hold at 1
    assert commit(a, dev={"tono-1": [6, 8]}) == {"dev": {"tono-1": 6}}
    assert commit(b, dev={"tono-1": [9]}) == {}  # 7 still missing: no ack, nothing to repeat
    assert commit(b, dev={"tono-1": [7]}) == {"dev": {"tono-1": 9}}
    assert a.publisher_acks("dev") == b.publisher_acks("dev") == {"tono-1": 9}
    assert rows(db, "SELECT COUNT(*) FROM ack_seqs") == [(0,)]  # nothing kept at or below an ack


def test_a_batch_of_only_resends_repeats_the_current_ack(two_stores):
    a, b, db = two_stores
    commit(a, dev={"tono-1": [10, 11, 12]})
    assert commit(b, dev={"tono-1": [11]}) == {"dev": {"tono-1": 12}}
    assert commit(b, dev={"tono-1": [14]}) == {}
    assert commit(a, dev={"tono-1": [12, 14]}) == {"dev": {"tono-1": 12}}  # re-send of 12, 13 still missing
    assert rows(db, "SELECT ack, seq FROM ack_seqs") == [("ack.dev.tono-1", 14)]


def test_publishers_and_routes_are_independent(two_stores):
    a, b, db = two_stores
    assert commit(a, dev={"x.1": [0, 2], "y": [5]}, hub={"x.1": [100, 102]}) == \
        {"dev": {"x.1": 0, "y": 5}, "hub": {"x.1": 100}}
    assert commit(b, dev={"x.1": [1]}, hub={"x.1": [101]}) == {"dev": {"x.1": 2}, "hub": {"x.1": 102}}
    assert a.publisher_acks("dev") == {"x.1": 2, "y": 5} and a.publisher_acks("hub") == {"x.1": 102}


def test_a_gateway_advancing_a_publisher_waits_for_the_other_and_sees_its_seqs(two_stores):
    """b commits seqs of a publisher while a's transaction holds seqs of it, not committed
    yet: b waits for a's commit (the ack row's lock), then advances over both."""
    a, b, _ = two_stores
    commit(a, dev={"tono-1": [0]})
    result: list[dict] = []
    waiter = threading.Thread(target=lambda: result.append(commit(b, dev={"tono-1": [1, 3]})))
    with a._write() as conn:
        assert a._advance_acks(conn, {"dev": {"tono-1": np.array([2, 4])}}) == {}  # 1 missing
        waiter.start()
        waiter.join(timeout=0.5)
        assert waiter.is_alive()  # held at the lock until a commits
    waiter.join(timeout=60)
    assert result == [{"dev": {"tono-1": 4}}]
    assert b.publisher_acks("dev") == {"tono-1": 4}


def test_concurrent_gateways_reach_the_highest_seq(db):
    """Two threads, each its own connection, commit the even and the odd seqs of 8
    publishers in batches at the same time: every ack ends at the highest seq."""
    publishers = [f"dev-{i}" for i in range(8)]
    errors: list[BaseException] = []

    def gateway(parity: int) -> None:
        try:
            with Store.open(db, busy_timeout_ms=30_000) as store:
                for start in range(0, 60, 6):
                    seqs = [s for s in range(start, start + 6) if s % 2 == parity]
                    commit(store, dev={p: seqs for p in publishers})
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    with Store.open(db):
        pass  # migrated before the threads start
    threads = [threading.Thread(target=gateway, args=(parity,)) for parity in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and not any(thread.is_alive() for thread in threads)
    with Store.open(db) as store:
        assert store.publisher_acks("dev") == {p: 59 for p in publishers}
        assert rows(db, "SELECT COUNT(*) FROM ack_seqs") == [(0,)]


def bp(seqs: list[int], mid: int) -> Received:
    readings = [{"seq": s, "t": NOW - 10_000 + s, "type": "bp", "sys": 120, "dia": 80} for s in seqs]
    return Received("pmp/v1/dev/tono-1/m", msgpack.packb(readings), mid, 1, 1, NOW)


def test_shared_ingests_publish_acks_of_what_both_committed(db):
    with Store.open(db) as setup:
        setup.add_patient("P1", tz="UTC")
        setup.add_device("tono-1", "bp")
        setup.bind("tono-1", "P1", 0)
    with Store.open(db) as a_store, Store.open(db) as b_store:
        a, b = Ingest(a_store, shared=True), Ingest(b_store, shared=True)
        assert a.process([bp([0, 1], 1), bp([4], 2)], NOW).publications == [("pmp/v1/dev/tono-1/ack", b'{"seq": 1}')]
        assert b.process([bp([2, 3], 3)], NOW).publications == [("pmp/v1/dev/tono-1/ack", b'{"seq": 4}')]
        resent = a.process([bp([3], 4)], NOW)  # b stored it: a duplicate here, acked again
        assert resent.result.duplicate == 1 and resent.publications == [("pmp/v1/dev/tono-1/ack", b'{"seq": 4}')]
        assert a_store.publisher_acks("dev") == {"tono-1": 4}
        assert rows(db, "SELECT COUNT(*) FROM readings") == [(5,)]
