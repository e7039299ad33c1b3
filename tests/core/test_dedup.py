"""Dedup table: duplicates, conflicts, growth, pruning, restart from keys, the bound (eviction
below a rising horizon, recall of older records' stored keys); compiled == twin."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import core
from core.codes import Flag, Kind, Reason
from core.dedup_keys import KEY_DTYPE, TAG_CONTEXT_SEQ, TAG_FINGERPRINT, TAG_SEQ
from tests.conftest import DIFFERENTIAL_EXAMPLES, differential
from tests.core.strategies import batches


def records(rows):
    """A batch from (device, kind, has_seq, seq, fingerprint, t) tuples."""
    batch = core.empty_batch(len(rows))
    for i, (device, kind, has_seq, seq, fingerprint, t) in enumerate(rows):
        batch["device"][i], batch["kind"][i], batch["seq"][i] = device, kind, seq
        batch["flags"][i] = Flag.HAS_TIME | (Flag.HAS_SEQ if has_seq else 0)
        batch["fingerprint"][i], batch["t"][i] = fingerprint, t
    return batch


def check(table, batch, recall=None):
    table.check_and_insert(batch["device"], batch["kind"], batch["flags"], batch["seq"], batch["fingerprint"],
                           batch["t"], batch["reason"], recall)
    return [Reason(r) for r in batch["reason"]]


class Store:
    """The store's side of ``recall``: KEY_DTYPE rows by (device, tag, key), and the calls."""

    def __init__(self, rows=()):
        self.rows = {}
        self.calls = []
        self.add(np.array(list(rows), dtype=KEY_DTYPE))

    def add(self, keys):
        for row in keys.tolist():
            self.rows.setdefault(tuple(row[:3]), row)

    def keys(self):
        return np.array(sorted(self.rows.values()), dtype=KEY_DTYPE)

    def recall(self, device, tag, key):
        assert (device.dtype, tag.dtype, key.dtype) == (np.int32, np.uint8, np.uint64)
        asked = list(zip(device.tolist(), tag.tolist(), key.tolist()))
        self.calls.append(asked)
        return np.array([self.rows[k] for k in dict.fromkeys(asked) if k in self.rows], dtype=KEY_DTYPE)


def test_duplicates_and_conflicts_within_and_across_batches(impl):
    table = impl.DedupTable()
    first = records([(1, Kind.BP, True, 7, 100, 1), (1, Kind.BP, True, 7, 100, 1), (1, Kind.BP, True, 7, 101, 1),
                     (2, Kind.BP, True, 7, 100, 1)])
    assert check(table, first) == [Reason.OK, Reason.DUPLICATE, Reason.CONFLICT, Reason.OK]
    again = records([(1, Kind.BP, True, 7, 100, 1), (2, Kind.BP, True, 7, 555, 1), (2, Kind.BP, True, 8, 100, 1)])
    assert check(table, again) == [Reason.DUPLICATE, Reason.CONFLICT, Reason.OK]
    assert len(table) == 3


def test_records_without_seq_are_keyed_by_fingerprint(impl):
    table = impl.DedupTable()
    batch = records([(1, Kind.BP, False, 0, 42, 1), (1, Kind.BP, False, 9, 42, 2), (1, Kind.BP, False, 0, 43, 1),
                     (3, Kind.BP, False, 0, 42, 1)])
    assert check(table, batch) == [Reason.OK, Reason.DUPLICATE, Reason.OK, Reason.OK]


def test_context_record_does_not_collide_with_its_measurement(impl):
    table = impl.DedupTable()
    batch = records([(1, Kind.GLU, True, 5, 1, 1), (1, Kind.GLU_CONTEXT, True, 5, 2, 1),
                     (1, Kind.GLU_CONTEXT, True, 5, 2, 1)])
    assert check(table, batch) == [Reason.OK, Reason.OK, Reason.DUPLICATE]
    assert sorted(table.keys()["tag"].tolist()) == [TAG_SEQ, TAG_CONTEXT_SEQ]


def test_only_ok_records_are_looked_up_or_remembered(impl):
    table = impl.DedupTable()
    batch = records([(1, Kind.BP, True, 1, 1, 1), (1, Kind.BP, True, 1, 1, 1)])
    batch["reason"][0] = Reason.UNBOUND
    assert check(table, batch) == [Reason.UNBOUND, Reason.OK]
    assert len(table) == 1


def test_table_grows_and_keeps_every_key(impl):
    table = impl.DedupTable()
    n = 20_000
    batch = records([(i % 97, Kind.GLU, True, i, i, i) for i in range(n)])
    assert set(check(table, batch)) == {Reason.OK}
    assert len(table) == n
    assert set(check(table, batch.copy())) == {Reason.DUPLICATE}


def test_prune_forgets_old_keys_only(impl):
    table = impl.DedupTable()
    check(table, records([(1, Kind.BP, True, s, s, s * 1000) for s in range(10)]))
    table.prune(5000)
    assert len(table) == 5
    assert check(table, records([(1, Kind.BP, True, 4, 4, 4000), (1, Kind.BP, True, 5, 5, 5000)])) == [
        Reason.OK, Reason.DUPLICATE]


def test_restart_from_stored_keys(impl):
    table = impl.DedupTable()
    check(table, records([(1, Kind.BP, True, 1, 10, 1), (1, Kind.CGM, False, 0, 11, 2)]))
    restored = impl.DedupTable.from_keys(table.keys())
    assert restored.keys().tobytes() == table.keys().tobytes()
    assert check(restored, records([(1, Kind.BP, True, 1, 10, 1), (1, Kind.CGM, False, 0, 11, 2)])) == [
        Reason.DUPLICATE, Reason.DUPLICATE]
    assert set(table.keys()["tag"].tolist()) == {TAG_SEQ, TAG_FINGERPRINT}
    assert table.keys().dtype == KEY_DTYPE


def bp(seq, fingerprint, t, device=1):
    return (device, Kind.BP, True, seq, fingerprint, t)


def test_a_full_table_evicts_the_oldest_keys_and_raises_its_horizon(impl):
    """16 slots hold 8 keys; 2 more evict down to 6 (75 %), the oldest: horizon t = 2."""
    table = impl.DedupTable(max_capacity=16)
    assert check(table, records([bp(s, s, s) for s in range(8)])) == [Reason.OK] * 8
    assert table.horizon == np.iinfo(np.int64).min
    assert check(table, records([bp(100, 100, 100), bp(101, 101, 101)])) == [Reason.OK] * 2
    assert table.horizon == 2 and len(table) == 8
    assert sorted(table.keys()["t"].tolist()) == [2, 3, 4, 5, 6, 7, 100, 101]


def test_a_record_before_the_horizon_is_decided_by_the_stored_keys_recalled(impl):
    """Evicted keys come back from the store for the records that need them: a re-send with
    the same values is a DUPLICATE, with other values a CONFLICT, a new old reading OK; the
    store is asked once a batch, for the OK records before the horizon only."""
    table = impl.DedupTable(max_capacity=16)
    first = records([bp(s, s, s) for s in range(8)])
    check(table, first)
    check(table, records([bp(100, 100, 100), bp(101, 101, 101)]))  # evicts seq 0 and 1 (t 0, 1)
    store = Store([(1, TAG_SEQ, s, s, s) for s in range(8)] + [(1, TAG_SEQ, s, s, s) for s in (100, 101)])
    late = records([bp(0, 0, 0), bp(1, 999, 1), bp(50, 50, 1), bp(3, 3, 3), bp(0, 0, 0)])
    late["reason"][2] = Reason.DECODE
    assert check(table, late, store.recall) == [Reason.DUPLICATE, Reason.CONFLICT, Reason.DECODE, Reason.DUPLICATE,
                                                Reason.DUPLICATE]
    # Room for 5 more keys evicted down to the 3 newest (t 7, 100, 101): seq 3 is recalled too.
    assert table.horizon == 7
    assert store.calls == [[(1, TAG_SEQ, 0), (1, TAG_SEQ, 1), (1, TAG_SEQ, 3), (1, TAG_SEQ, 0)]]
    new_but_old = records([bp(60, 60, 0)])
    assert check(table, new_but_old, store.recall) == [Reason.OK]
    alone = impl.DedupTable(max_capacity=16)
    check(alone, first)
    check(alone, records([bp(100, 100, 100), bp(101, 101, 101)]))
    assert check(alone, records([bp(0, 0, 0)])) == [Reason.OK]  # without recall: not seen


def test_nothing_is_recalled_while_no_key_was_evicted(impl):
    table, store = impl.DedupTable(max_capacity=16), Store()
    check(table, records([bp(s, s, s) for s in range(7)]), store.recall)
    assert check(table, records([bp(0, 0, 0)]), store.recall) == [Reason.DUPLICATE]
    assert store.calls == []


def test_a_batch_larger_than_the_table_is_held_whole_then_the_table_shrinks_back():
    """A batch of more keys than the bound holds grows the compiled table past it for that
    batch (its in-batch duplicates are still caught); the next batch evicts back within it."""
    table = core.compiled.DedupTable(max_capacity=16)
    big = records([bp(s, s, 1000 + s) for s in range(20)] + [bp(5, 5, 1005)])
    assert check(table, big) == [Reason.OK] * 20 + [Reason.DUPLICATE]
    assert table.capacity > table.max_capacity and len(table) == 20
    assert check(table, records([bp(99, 99, 2000)])) == [Reason.OK]
    assert table.capacity <= table.max_capacity and len(table) <= table.max_keys
    assert table.horizon == 1014  # the 6 newest of the big batch stay (75 % of 8 keys): t 1014 ... 1019


def test_eviction_in_place_keeps_every_other_key_findable():
    """Removing keys from an open-addressing table in place moves later keys of a probe run
    back; a table at its highest load, half of it evicted, still finds each kept key."""
    rng = np.random.default_rng(7)
    n = 512
    table = core.compiled.DedupTable(max_capacity=1024)
    t = rng.permutation(n)
    rows = [(int(d), Kind.BP, True, int(s), int(s), int(ti)) for d, s, ti in zip(rng.integers(0, 5, n), range(n), t)]
    assert set(check(table, records(rows))) == {Reason.OK}
    assert len(table) == n == table.max_keys
    table.prune(n // 2)
    assert len(table) == n // 2 and table.capacity == 1024
    assert (table.keys()["t"] >= n // 2).all()
    kept = [row for row in rows if row[5] >= n // 2]
    assert set(check(table, records(kept))) == {Reason.DUPLICATE}
    gone = [row for row in rows if row[5] < n // 2]
    assert set(check(table, records(gone))) == {Reason.OK}  # room for them: nothing evicted meanwhile
    assert len(table) == n


@pytest.mark.parametrize("max_capacity", [0, 3, 1000, -16])
def test_max_capacity_is_a_power_of_two(impl, max_capacity):
    with pytest.raises(ValueError, match=f"CAPACITY.*not {max_capacity}"):
        impl.DedupTable(max_capacity=max_capacity)


def run_both(compiled, twin, batch):
    twin_batch = batch.copy()
    check(compiled, batch)
    check(twin, twin_batch)
    assert batch.tobytes() == twin_batch.tobytes()
    return batch


@differential
@given(st.lists(batches(), max_size=4))
def test_compiled_equals_twin(batch_list):
    compiled, twin = core.compiled.DedupTable(), core.reference.DedupTable()
    for batch in batch_list:
        run_both(compiled, twin, batch)
    assert compiled.keys().tobytes() == twin.keys().tobytes()


class DedupStateMachine(RuleBasedStateMachine):
    """Ingest, re-send, prune and restart; compiled and twin tables never disagree, and no
    key is ever accepted twice."""

    def __init__(self):
        super().__init__()
        self.compiled, self.twin = core.compiled.DedupTable(), core.reference.DedupTable()
        self.sent: list[np.ndarray] = []
        self.accepted: dict[tuple, int] = {}
        self.horizon = -(2**63)

    def _ingest(self, batch):
        self.sent.append(batch.copy())
        out = run_both(self.compiled, self.twin, batch)
        for row in out[out["reason"] == Reason.OK]:
            has_seq = bool(row["flags"] & Flag.HAS_SEQ)
            key = (int(row["device"]), int(row["kind"]) == Kind.GLU_CONTEXT if has_seq else None,
                   int(row["seq"]) if has_seq else int(row["fingerprint"]))
            assert key not in self.accepted
            self.accepted[key] = int(row["t"])

    @rule(batch=batches(max_size=30))
    def ingest(self, batch):
        self._ingest(batch)

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def resend(self, data):
        self._ingest(data.draw(st.sampled_from(self.sent)).copy())

    @rule(horizon=st.integers(0, 2**63 - 1) | st.integers(-(2**63), 0))
    def prune(self, horizon):
        self.compiled.prune(horizon)
        self.twin.prune(horizon)
        self.horizon = max(self.horizon, horizon)  # a prune drops keys before the highest horizon yet
        self.accepted = {key: t for key, t in self.accepted.items() if t >= self.horizon}

    @rule()
    def restart_from_keys(self):
        keys = self.compiled.keys()
        self.compiled = core.compiled.DedupTable.from_keys(keys)
        self.twin = core.reference.DedupTable.from_keys(keys)
        self.horizon = -(2**63)  # new tables: nothing pruned yet

    @invariant()
    def same_keys(self):
        assert len(self.compiled) == len(self.twin)
        assert self.compiled.keys().tobytes() == self.twin.keys().tobytes()


TestDedupStateMachine = DedupStateMachine.TestCase
TestDedupStateMachine.settings = settings(max_examples=max(DIFFERENTIAL_EXAMPLES // 10, 50), stateful_step_count=20)


T_MAX = np.iinfo(np.int64).max


def key_of(row) -> tuple[int, int, int]:
    """(device, tag, key) of a record, as core.dedup_keys defines it."""
    if row["flags"] & Flag.HAS_SEQ:
        return int(row["device"]), TAG_CONTEXT_SEQ if row["kind"] == Kind.GLU_CONTEXT else TAG_SEQ, int(row["seq"])
    return int(row["device"]), TAG_FINGERPRINT, int(row["fingerprint"])


class BoundedDedupMachine(RuleBasedStateMachine):
    """Tiny bounds, a store (the source of truth) and the gateway's protocol: every batch is
    checked with ``recall`` against the store, then its OK records are stored. Compiled and
    twin agree on every reason, key, horizon and evicted seq; every reason is the one the
    whole store gives (never a reading stored twice, never one lost), but for the one case
    the table does not cover (``check_and_insert``: a fingerprint-keyed copy with another
    time than its evicted stored copy, which the store finds itself); the bound holds;
    every stored key measured at or after the horizon is in the table."""

    def __init__(self):
        super().__init__()
        self.store = Store()

    @initialize(max_capacity=st.sampled_from([2, 4, 16, 64]))
    def tables(self, max_capacity):
        self.max_capacity = max_capacity
        self.compiled = core.compiled.DedupTable(max_capacity=max_capacity)
        self.twin = core.reference.DedupTable(max_capacity=max_capacity)
        self.oversized = False

    def expected(self, batch):
        """Reasons by the whole store and the batch's own earlier records, and the records
        the table may leave OK: the first copy in the batch of a fingerprint key stored
        with another time (whether that copy was evicted is checked by the caller)."""
        out, seen = batch["reason"].copy(), dict(self.store.rows)
        may_miss = np.zeros(len(batch), dtype=bool)
        for i, row in enumerate(batch):
            if row["reason"] != Reason.OK:
                continue
            k = key_of(row)
            if k in seen:
                out[i] = Reason.DUPLICATE if seen[k][3] == int(row["fingerprint"]) else Reason.CONFLICT
                may_miss[i] = k in self.store.rows and k[1] == TAG_FINGERPRINT and seen[k][4] != int(row["t"])
                seen[k] = seen[k][:4] + (int(row["t"]),)  # a later copy with this time is caught
            else:
                seen[k] = (*k, int(row["fingerprint"]), int(row["t"]))
        return out, may_miss

    @rule(batch=batches(max_size=30), data=st.data())
    def ingest(self, batch, data):
        batch["t"] = np.minimum(batch["t"], T_MAX - 1)  # a validated time, never the int64 maximum
        if len(self.store.rows) and data.draw(st.booleans()):  # re-send stored readings, some altered
            stored = data.draw(st.lists(st.sampled_from(sorted(self.store.rows.values())), min_size=1, max_size=8))
            resend = records([(d, Kind.BP if tag == TAG_SEQ else Kind.CGM, tag == TAG_SEQ, key % 2**32,
                               fp ^ data.draw(st.sampled_from([0, 0, 1])), t) for d, tag, key, fp, t in stored
                              if tag != TAG_CONTEXT_SEQ])
            batch = np.concatenate([batch, resend])
        expected, may_miss = self.expected(batch)
        before = {k: row[4] for k, row in self.store.rows.items()}
        twin_batch = batch.copy()
        self.compiled.check_and_insert(batch["device"], batch["kind"], batch["flags"], batch["seq"],
                                       batch["fingerprint"], batch["t"], batch["reason"], self.store.recall)
        self.twin.check_and_insert(twin_batch["device"], twin_batch["kind"], twin_batch["flags"], twin_batch["seq"],
                                   twin_batch["fingerprint"], twin_batch["t"], twin_batch["reason"],
                                   self.store.recall)
        assert batch.tobytes() == twin_batch.tobytes()
        horizon = self.compiled.horizon
        for i, (got, want) in enumerate(zip(batch["reason"].tolist(), expected.tolist())):
            missed = (may_miss[i] and got == Reason.OK and before[key_of(batch[i])] < horizon
                      <= int(batch["t"][i]))
            assert got == want or missed, (i, Reason(got), Reason(want))
        self.store.add(np.array([(*key_of(row), int(row["fingerprint"]), int(row["t"]))
                                 for row in batch[batch["reason"] == Reason.OK]], dtype=KEY_DTYPE))
        self.oversized = len(batch) > self.compiled.max_keys

    @rule(horizon=st.integers(-(2**63), 2**63 - 1))
    def prune(self, horizon):
        self.compiled.prune(horizon)
        self.twin.prune(horizon)

    @rule(chunk=st.integers(1, 40), since_stored=st.booleans())
    def restart(self, chunk, since_stored):
        """A gateway start: new tables filled from the store in chunks (from the median time
        on, with the highest seq of each device before it noted, if ``since_stored``)."""
        keys = self.store.keys()
        self.compiled = core.compiled.DedupTable(max_capacity=self.max_capacity)
        self.twin = core.reference.DedupTable(max_capacity=self.max_capacity)
        if since_stored and len(keys):
            since = int(np.median(keys["t"]))
            old = keys[(keys["t"] < since) & (keys["tag"] != TAG_FINGERPRINT)]
            for table in (self.compiled, self.twin):
                table.prune(since)
                table.add_evicted_seqs(old["device"], old["key"].astype(np.int64))
            keys = keys[keys["t"] >= since]
        for start in range(0, len(keys), chunk):
            self.compiled.add_stored(keys[start:start + chunk])
            self.twin.add_stored(keys[start:start + chunk])
        self.oversized = False  # filling takes a piece at a time: never past the bound

    @invariant()
    def agree_bounded_and_complete_above_the_horizon(self):
        if not hasattr(self, "compiled"):
            return
        assert self.compiled.keys().tobytes() == self.twin.keys().tobytes()
        assert self.compiled.horizon == self.twin.horizon
        evicted = {d: s for d, s in enumerate(self.compiled.evicted_seq.tolist()) if s >= 0}
        assert evicted == self.twin._evicted_seq
        if not self.oversized:
            assert len(self.compiled) <= self.compiled.max_keys
            assert self.compiled.capacity <= self.max_capacity
        held = {tuple(row[:3]) for row in self.compiled.keys().tolist()}
        assert all(k in held for k, row in self.store.rows.items() if row[4] >= self.compiled.horizon)


TestBoundedDedupMachine = BoundedDedupMachine.TestCase
TestBoundedDedupMachine.settings = settings(max_examples=max(DIFFERENTIAL_EXAMPLES // 10, 50), stateful_step_count=20)
