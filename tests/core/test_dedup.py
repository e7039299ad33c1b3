"""Dedup table: duplicates, conflicts, growth, pruning, restart from keys; compiled == twin."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

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


def check(table, batch):
    table.check_and_insert(batch["device"], batch["kind"], batch["flags"], batch["seq"], batch["fingerprint"],
                           batch["t"], batch["reason"])
    return [Reason(r) for r in batch["reason"]]


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
        self.accepted = {key: t for key, t in self.accepted.items() if t >= horizon}

    @rule()
    def restart_from_keys(self):
        keys = self.compiled.keys()
        self.compiled = core.compiled.DedupTable.from_keys(keys)
        self.twin = core.reference.DedupTable.from_keys(keys)

    @invariant()
    def same_keys(self):
        assert len(self.compiled) == len(self.twin)
        assert self.compiled.keys().tobytes() == self.twin.keys().tobytes()


TestDedupStateMachine = DedupStateMachine.TestCase
TestDedupStateMachine.settings = settings(max_examples=max(DIFFERENTIAL_EXAMPLES // 10, 50), stateful_step_count=20)
