"""The whole core on batches: examples end to end, and compiled pipeline == twin pipeline."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import core
from core.bindings import OPEN_END, Bindings
from core.codes import NO_USER, Flag, Kind, Reason
from core.pipeline import Pipeline
from core.rule_tables import Rule
from tests.conftest import differential
from tests.core.strategies import NOW_MS, batches

BINDINGS = Bindings.from_tuples([(d, NO_USER, 0, OPEN_END, d % 3) for d in range(4)], n_devices=5)
TZ = np.array([180, 0, -300], dtype=np.int16)


def pipeline(impl):
    return Pipeline(impl, n_patients=3, tz_min=TZ, bindings=BINDINGS)


def reading(kind, values, *, device=0, seq=1, t=NOW_MS - 60_000):
    batch = core.empty_batch(1)
    batch["kind"], batch["device"], batch["seq"], batch["t"], batch["rx"] = kind, device, seq, t, NOW_MS
    batch["flags"] = Flag.HAS_TIME | Flag.HAS_SEQ
    batch["v"][0, : len(values)] = values
    return batch


def test_crisis_reading_is_stored_and_raises_one_alert(impl):
    core_pipeline = pipeline(impl)
    batch = np.concatenate([reading(Kind.BP, (185, 95, np.nan, 80)), reading(Kind.BP, (185, 95, np.nan, 80))])
    alerts = core_pipeline.process(batch, NOW_MS)
    assert batch["reason"].tolist() == [Reason.OK, Reason.DUPLICATE]
    assert batch["patient"][0] == 0
    assert [(a["reading"], Rule(a["rule"])) for a in alerts] == [(0, Rule.BP_CRISIS)]


def test_unbound_reading_is_not_remembered_as_stored(impl):
    core_pipeline = pipeline(impl)
    unbound = reading(Kind.GLU, (2.5,), device=4)
    assert len(core_pipeline.process(unbound, NOW_MS)) == 0
    assert unbound["reason"][0] == Reason.UNBOUND
    core_pipeline.bindings = Bindings.from_tuples([(4, NO_USER, 0, OPEN_END, 2)], n_devices=5)
    replayed = reading(Kind.GLU, (2.5,), device=4)
    alerts = core_pipeline.process(replayed, NOW_MS)
    assert replayed["reason"][0] == Reason.OK
    assert [Rule(a["rule"]) for a in alerts] == [Rule.GLU_LOW_L2]


def test_rejected_reading_raises_nothing(impl):
    batch = reading(Kind.BP, (185, 95, np.nan, np.nan), t=946_684_800_000)  # a reset clock: year 2000
    assert len(pipeline(impl).process(batch, NOW_MS)) == 0
    assert batch["reason"][0] == Reason.STALE


@pytest.mark.parametrize("n_batches", [1, 3])
def test_fleet_day_close_gives_the_same_window_alerts_on_both(n_batches):
    from bench.fleet import make_fleet

    fleet = make_fleet(6_000, 20, seed=3)
    out = []
    for impl in (core.compiled, core.reference):
        p = Pipeline(impl, n_patients=fleet.n_patients, tz_min=fleet.tz_min, bindings=fleet.bindings)
        batch = fleet.batch.copy()
        alerts = [p.process(part, fleet.now_ms) for part in np.array_split(batch, n_batches)]
        today = (fleet.now_ms + 180 * 60_000) // 86_400_000
        closed = p.close_days(np.arange(fleet.n_patients, dtype=np.int32),
                              np.full(fleet.n_patients, today, dtype=np.int32))
        out.append((batch.tobytes(), [a.tobytes() for a in alerts], closed.tobytes()))
    assert out[0] == out[1]


@differential
@given(st.lists(batches(max_size=30), min_size=1, max_size=3))
def test_compiled_pipeline_equals_twin(batch_list):
    compiled, twin = pipeline(core.compiled), pipeline(core.reference)
    for batch in batch_list:
        twin_batch = batch.copy()
        a = compiled.process(batch, NOW_MS)
        b = twin.process(twin_batch, NOW_MS)
        assert batch.tobytes() == twin_batch.tobytes()
        assert a.tobytes() == b.tobytes()


def test_registry_growth_keeps_state_and_serves_new_patients(impl):
    core_pipeline = pipeline(impl)
    core_pipeline.process(reading(Kind.GLU, (2.5,), device=0), NOW_MS)
    grown = Bindings.from_tuples([(d, NO_USER, 0, OPEN_END, d) for d in range(5)], n_devices=5)
    core_pipeline.set_registry(tz_min=np.array([180, 0, -300, 60, 0], dtype=np.int16), bindings=grown)
    batch = np.concatenate([reading(Kind.GLU, (2.5,), device=4, seq=9), reading(Kind.GLU, (2.5,), device=0)])
    alerts = core_pipeline.process(batch, NOW_MS)
    assert batch["patient"].tolist() == [4, 0]
    assert batch["reason"].tolist() == [Reason.OK, Reason.DUPLICATE]
    assert [(a["reading"], Rule(a["rule"])) for a in alerts] == [(0, Rule.GLU_LOW_L2)]
    with pytest.raises(ValueError, match="lost patients"):
        core_pipeline.set_registry(tz_min=TZ, bindings=BINDINGS)
