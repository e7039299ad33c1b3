"""Reading rules: every threshold edge, exclusions, family-most-severe, CGM falling; compiled == twin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import core
import core.compiled
import core.reference
from core.codes import Flag, Kind, Reason
from core.rule_tables import (NO_CGM_TIME, READING_FAMILIES, RULES, SEVERITY_RANK, THRESHOLDS, Param, Rule,
                              cgm_state, default_thresholds)
from tests.conftest import differential
from tests.core.clinical_strategies import make_batch, BASE_MS, mixed_batches, thresholds

NAN = float("nan")
MIN = 60_000

def bp(sys_, dia, pulse=NAN, patient=0, flags=0, t=BASE_MS):
    return (patient, Kind.BP, t, [sys_, dia, NAN, pulse], flags)


def glu(value, patient=0, flags=0, t=BASE_MS, kind=Kind.GLU, trend=NAN):
    return (patient, kind, t, [value, trend], flags)


def cgm(value, t, trend=NAN, patient=0, flags=0):
    return glu(value, patient, flags, t, Kind.CGM, trend)


def run(impl, batch, table=None, state=None):
    """Alerts as [(reading index, Rule)], and the CGM state after the call."""
    n_patients = 3
    table = default_thresholds(n_patients) if table is None else table
    last_t, last_glu = cgm_state(n_patients) if state is None else state
    out_reading = np.full(2 * len(batch), -1, dtype=np.int64)
    out_rule = np.zeros(2 * len(batch), dtype=np.uint8)
    n = impl.reading_alerts(batch["patient"], batch["kind"], batch["t"], batch["v"], batch["flags"], batch["reason"],
                            table, last_t, last_glu, out_reading, out_rule)
    return [(int(i), Rule(r)) for i, r in zip(out_reading[:n], out_rule[:n])], (last_t, last_glu)


def rules_of(impl, row, **kwargs):
    return [rule for _, rule in run(impl, make_batch([row]), **kwargs)[0]]


def test_rule_table_is_complete_and_families_are_ranked():
    assert set(RULES) == set(Rule)
    assert {spec.severity for spec in RULES.values()} <= set(SEVERITY_RANK)
    assert RULES[Rule.BP_CRISIS].route == ("physician", "nurse")
    assert RULES[Rule.MISSED].route == ("personal_admin",)
    assert RULES[Rule.DEVICE].route == ("device_admin",)
    reading_rules = {rule for rule, spec in RULES.items() if spec.family in READING_FAMILIES}
    assert reading_rules == {Rule.BP_CRISIS, Rule.BP_LOW, Rule.PULSE, Rule.GLU_LOW_L2, Rule.GLU_LOW_L1, Rule.GLU_HIGH,
                             Rule.CGM_FALLING}
    assert len(THRESHOLDS) == len(Param) and Param.crisis_sys == 0
    table = default_thresholds(2)
    assert table.shape == (2, len(THRESHOLDS)) and table[1, Param.glu_low_l1] == 3.9


@pytest.mark.parametrize(("sys_", "dia", "expected"), [
    (180.0, 100.0, [Rule.BP_CRISIS]), (179.99, 100.0, []), (150.0, 120.0, [Rule.BP_CRISIS]),
    (150.0, 119.99, []), (90.0, 60.0, []), (89.99, 60.0, [Rule.BP_LOW]),
    (85.0, 125.0, [Rule.BP_CRISIS]),  # both match: only the emergency of the family
])
def test_bp_level_edges(impl, sys_, dia, expected):
    assert rules_of(impl, bp(sys_, dia)) == expected


@pytest.mark.parametrize(("pulse", "expected"), [
    (40.0, []), (39.99, [Rule.PULSE]), (130.0, []), (130.01, [Rule.PULSE]), (NAN, []),
])
def test_pulse_edges(impl, pulse, expected):
    assert rules_of(impl, bp(120.0, 80.0, pulse)) == expected


def test_bp_level_and_pulse_families_both_fire_in_family_order(impl):
    assert rules_of(impl, bp(190.0, 100.0, 150.0)) == [Rule.BP_CRISIS, Rule.PULSE]


@pytest.mark.parametrize("kind", [Kind.GLU, Kind.CGM])
@pytest.mark.parametrize(("value", "flags", "expected"), [
    (3.0, 0, [Rule.GLU_LOW_L1]), (2.99, 0, [Rule.GLU_LOW_L2]), (2.8, 0, [Rule.GLU_LOW_L2]),
    (3.9, 0, []), (3.89, 0, [Rule.GLU_LOW_L1]), (13.9, 0, []), (13.91, 0, [Rule.GLU_HIGH]),
    (NAN, Flag.RANGE_LO, [Rule.GLU_LOW_L2]), (NAN, Flag.RANGE_HI, [Rule.GLU_HIGH]),
    (8.0, Flag.RANGE_HI, [Rule.GLU_HIGH]),  # a censored reading's value is ignored
    (NAN, Flag.RANGE_LO | Flag.RANGE_HI, [Rule.GLU_LOW_L2]), (NAN, 0, []),
])
def test_glucose_level_edges(impl, kind, value, flags, expected):
    assert rules_of(impl, glu(value, flags=flags, kind=kind)) == expected


@pytest.mark.parametrize("flags", [Flag.CONTROL, Flag.CONTROL | Flag.RANGE_LO])
def test_control_solution_readings_raise_nothing(impl, flags):
    batch = make_batch([bp(200.0, 130.0, 20.0, flags=flags), glu(1.0, flags=flags),
                        cgm(1.0, BASE_MS, -1.0, flags=flags)])
    assert run(impl, batch)[0] == []


def test_readings_flagged_as_disturbed_still_raise_alerts(impl):
    batch = make_batch([bp(200.0, 130.0, flags=Flag.ARTIFACT), glu(2.5, flags=Flag.ARTIFACT)])
    assert run(impl, batch)[0] == [(0, Rule.BP_CRISIS), (1, Rule.GLU_LOW_L2)]


def test_only_stored_bound_clinical_kinds_are_evaluated(impl):
    batch = make_batch([bp(200.0, 130.0), bp(200.0, 130.0, patient=-1), glu(1.0),
                        (0, Kind.GLU_CONTEXT, BASE_MS, [1.0], 0), (0, Kind.NONE, BASE_MS, [1.0], 0),
                        glu(1.0, flags=Flag.LATE)])
    batch["reason"][0] = Reason.RANGE
    batch["reason"][2] = Reason.DUPLICATE
    assert run(impl, batch)[0] == [(5, Rule.GLU_LOW_L2)]


def test_patient_targets_override_defaults(impl):
    table = default_thresholds(3)
    table[1, Param.crisis_sys] = 160.0
    batch = make_batch([bp(165.0, 90.0, patient=0), bp(165.0, 90.0, patient=1)])
    assert run(impl, batch, table)[0] == [(1, Rule.BP_CRISIS)]


@pytest.mark.parametrize(("trend", "value", "expected"), [
    (-0.12, 4.0, [Rule.CGM_FALLING]), (-0.11, 4.0, []), (-0.2, 5.0, []), (-0.2, 4.99, [Rule.CGM_FALLING]),
    (-0.2, 3.5, [Rule.GLU_LOW_L1, Rule.CGM_FALLING]), (-0.2, NAN, []),
])
def test_cgm_falling_from_trend(impl, trend, value, expected):
    assert rules_of(impl, cgm(value, BASE_MS, trend)) == expected


def test_cgm_falling_needs_cgm_not_glucometer(impl):
    assert rules_of(impl, glu(4.0, trend=-1.0)) == []


def test_cgm_falling_derived_from_previous_reading(impl):
    # 5.5 -> 4.8 in 5 min = -0.14/min, below 5.0: fires; 4.8 -> 4.3 in 5 min = -0.1: no.
    batch = make_batch([cgm(5.5, BASE_MS), cgm(4.8, BASE_MS + 5 * MIN), cgm(4.3, BASE_MS + 10 * MIN)])
    alerts, (last_t, last_glu) = run(impl, batch)
    assert alerts == [(1, Rule.CGM_FALLING)]
    assert last_t[0] == BASE_MS + 10 * MIN and last_glu[0] == 4.3
    assert last_t[1] == NO_CGM_TIME and np.isnan(last_glu[1])


def test_cgm_derived_rate_only_within_30_minutes_and_from_earlier_readings(impl):
    far = make_batch([cgm(9.0, BASE_MS), cgm(4.0, BASE_MS + 30 * MIN + 1)])
    assert run(impl, far)[0] == []
    near = make_batch([cgm(9.0, BASE_MS), cgm(4.0, BASE_MS + 30 * MIN)])
    assert run(impl, near)[0] == [(1, Rule.CGM_FALLING)]
    # an out-of-order (earlier) reading neither derives a rate nor replaces the last reading
    back = make_batch([cgm(9.0, BASE_MS), cgm(4.0, BASE_MS - 5 * MIN), cgm(4.5, BASE_MS + 5 * MIN)])
    alerts, (last_t, _) = run(impl, back)
    assert alerts == [(2, Rule.CGM_FALLING)] and last_t[0] == BASE_MS + 5 * MIN
    same_time = make_batch([cgm(9.0, BASE_MS), cgm(4.0, BASE_MS)])
    assert run(impl, same_time)[0] == []


def test_cgm_state_carries_over_batches_and_patients_are_separate(impl):
    state = cgm_state(3)
    run(impl, make_batch([cgm(6.0, BASE_MS, patient=0), cgm(6.0, BASE_MS, patient=1)]), state=state)
    alerts, _ = run(impl, make_batch([cgm(4.5, BASE_MS + 5 * MIN, patient=0), cgm(5.9, BASE_MS + 5 * MIN, patient=1)]),
                    state=state)
    assert alerts == [(0, Rule.CGM_FALLING)]


def test_trend_wins_over_derived_rate(impl):
    batch = make_batch([cgm(9.0, BASE_MS), cgm(4.0, BASE_MS + 5 * MIN, trend=0.0)])
    assert run(impl, batch)[0] == []


def test_censored_cgm_is_stored_as_no_value(impl):
    batch = make_batch([cgm(NAN, BASE_MS, flags=Flag.RANGE_LO), cgm(4.0, BASE_MS + 5 * MIN)])
    alerts, (last_t, last_glu) = run(impl, batch)
    assert alerts == [(0, Rule.GLU_LOW_L2)]
    assert last_t[0] == BASE_MS + 5 * MIN and last_glu[0] == 4.0


def test_alerts_come_in_reading_order_then_family_order(impl):
    batch = make_batch([glu(20.0), bp(200.0, 100.0, 30.0), cgm(2.0, BASE_MS, -0.5)])
    assert run(impl, batch)[0] == [(0, Rule.GLU_HIGH), (1, Rule.BP_CRISIS), (1, Rule.PULSE), (2, Rule.GLU_LOW_L2),
                                   (2, Rule.CGM_FALLING)]


def test_works_on_strided_column_views_of_a_real_batch(impl):
    batch = make_batch([bp(200.0, 100.0)] * 5)
    assert not batch["t"].flags.c_contiguous
    assert [i for i, _ in run(impl, batch)[0]] == [0, 1, 2, 3, 4]


def test_output_too_small_and_unknown_patient_raise(impl):
    batch = make_batch([bp(200.0, 100.0)])
    last_t, last_glu = cgm_state(1)
    small = np.zeros(1, dtype=np.int64)
    with pytest.raises(ValueError, match="2 rows per reading"):
        impl.reading_alerts(batch["patient"], batch["kind"], batch["t"], batch["v"], batch["flags"], batch["reason"],
                            default_thresholds(1), last_t, last_glu, small, np.zeros(1, np.uint8))
    batch["patient"] = 5
    with pytest.raises(IndexError, match="patient index"):
        run(impl, batch)


N_PATIENTS = 3


@differential
@given(data=st.data(), table=thresholds(N_PATIENTS))
def test_compiled_equals_twin(data, table):
    state_c = cgm_state(N_PATIENTS)
    state_r = cgm_state(N_PATIENTS)
    for batch in data.draw(st.lists(mixed_batches(N_PATIENTS), min_size=1, max_size=3)):
        out_c = np.zeros(2 * len(batch), np.int64), np.zeros(2 * len(batch), np.uint8)
        out_r = np.zeros(2 * len(batch), np.int64), np.zeros(2 * len(batch), np.uint8)
        columns = batch["patient"], batch["kind"], batch["t"], batch["v"], batch["flags"], batch["reason"]
        n_c = core.compiled.reading_alerts(*columns, table, *state_c, *out_c)
        n_r = core.reference.reading_alerts(*columns, table, *state_r, *out_r)
        assert n_c == n_r
        for name in {Rule(r).name for r in out_c[1][:n_c]}:
            event(f"raised {name}")
        for compiled, twin in zip(out_c + state_c, out_r + state_r):
            assert compiled.tobytes() == twin.tobytes()


def test_late_alerts_are_never_emergencies():
    from core.rule_tables import severity_and_route

    assert severity_and_route(Rule.BP_CRISIS, False) == ("emergency", ("physician", "nurse"))
    assert severity_and_route(Rule.BP_CRISIS, True) == ("urgent", ("physician",))
    assert severity_and_route(Rule.GLU_LOW_L2, True) == ("urgent", ("physician",))
    assert severity_and_route(Rule.GLU_HIGH, True) == RULES[Rule.GLU_HIGH][:2]
    assert severity_and_route(Rule.BP_HOME_HIGH, True) == ("warning", ("physician",))
