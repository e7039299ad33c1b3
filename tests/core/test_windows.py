"""Window state and window rules: ESH home mean, TIR/TBR/CV, late data, the ring, local days;
compiled == twin on random batches and in a stateful run."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import core
import core.compiled
import core.reference
from core.codes import Flag, Kind, Reason
from core.rule_tables import Param, Rule, default_thresholds
from core.window_layout import EMPTY_DAY, N_METRICS, RING_DAYS, WINDOW_ALERT_DTYPE, Acc, Metric
from tests.conftest import DIFFERENTIAL_EXAMPLES, IMPLEMENTATIONS, differential
from tests.core.clinical_strategies import make_batch, BASE_DAY, DAY_MS, batches, mixed_batches, thresholds, tz_minutes

NAN = float("nan")
HOUR = 3_600_000
D = BASE_DAY  # the day that closes in most tests

def at(day: int, hour: float = 8.0, tz: int = 0) -> int:
    """ms UTC of a local time on a local day, in a zone tz minutes ahead of UTC."""
    return day * DAY_MS + int(hour * HOUR) - tz * 60_000


def bp_days(per_day: dict[int, list[tuple[float, float]]], patient: int = 0, tz: int = 0) -> np.ndarray:
    """BP readings: local day -> [(sys, dia)], spread over the morning."""
    return make_batch([(patient, Kind.BP, at(day, 7 + k, tz), [s, d], 0)
                       for day, pairs in per_day.items() for k, (s, d) in enumerate(pairs)])


def cgm_days(per_day: dict[int, list[float]], patient: int = 0, flags: int = 0) -> np.ndarray:
    """CGM readings: local day -> glucose values, spread over the day."""
    return make_batch([(patient, Kind.CGM, at(day, 24.0 * k / len(values)), [g], flags)
                       for day, values in per_day.items() for k, g in enumerate(values)])


def new_state(impl, n_patients: int = 2, tz=None):
    return impl.WindowState(n_patients, np.zeros(n_patients, np.int16) if tz is None else np.asarray(tz, np.int16))


def close(state, patient: int = 0, day: int = D, table=None):
    table = default_thresholds(state.n_patients) if table is None else table
    return state.close_days(np.array([patient], np.int32), np.array([day], np.int32), table)


def only(alerts, rule: Rule):
    found = alerts[alerts["rule"] == rule]
    assert len(found) <= 1
    return found


def slot(state, patient: int, metric: Metric, day: int) -> np.ndarray:
    return state.arrays()["acc"][patient * N_METRICS + metric, day % RING_DAYS]


# ---- BP_HOME_HIGH (ESH) ------------------------------------------------------------------

def test_home_mean_discards_the_first_measuring_day(impl):
    state = new_state(impl)
    # day D-6 alone would push the mean over 135/85; it is discarded.
    state.update(bp_days({D - 6: [(220.0, 120.0)] * 2} | {d: [(130.0, 80.0)] * 2 for d in range(D - 5, D + 1)}))
    assert len(close(state)) == 0
    state.update(bp_days({D - 5: [(200.0, 80.0)]}))
    alert = only(close(state), Rule.BP_HOME_HIGH)
    assert alert["patient"][0] == 0 and alert["day"][0] == D
    assert alert["values"][0].tolist() == [(200.0 + 12 * 130.0) / 13, 80.0, 13.0, 6.0]


def test_first_day_is_the_first_with_readings_not_the_first_of_the_span(impl):
    state = new_state(impl)
    state.update(bp_days({D - 4: [(100.0, 70.0)] * 3} | {d: [(140.0, 80.0)] * 4 for d in range(D - 3, D + 1)}))
    assert only(close(state), Rule.BP_HOME_HIGH)["values"][0].tolist() == [140.0, 80.0, 16.0, 4.0]
    # readings before the 7-day span do not count and are not the discarded day
    state.update(bp_days({D - 7: [(300.0, 150.0)] * 5}))
    assert only(close(state), Rule.BP_HOME_HIGH)["values"][0].tolist() == [140.0, 80.0, 16.0, 4.0]


@pytest.mark.parametrize(("n", "fires"), [(11, False), (12, True)])
def test_home_mean_needs_twelve_readings_after_the_discard(impl, n, fires):
    state = new_state(impl)
    readings = {D - 6: [(150.0, 95.0)]} | {D - 5 + k % 6: [] for k in range(6)}
    for k in range(n):
        readings[D - 5 + k % 6].append((150.0, 95.0))
    state.update(bp_days(readings))
    assert len(only(close(state), Rule.BP_HOME_HIGH)) == fires


@pytest.mark.parametrize(("sys_", "dia", "fires"), [
    (135.0, 80.0, True), (134.5, 80.0, False), (120.0, 85.0, True), (120.0, 84.5, False),
])
def test_home_mean_threshold_edges(impl, sys_, dia, fires):
    state = new_state(impl)
    state.update(bp_days({d: [(sys_, dia)] * 3 for d in range(D - 6, D + 1)}))
    assert len(only(close(state), Rule.BP_HOME_HIGH)) == fires


def test_home_mean_uses_patient_targets(impl):
    state = new_state(impl)
    state.update(bp_days({d: [(132.0, 80.0)] * 3 for d in range(D - 6, D + 1)}))
    table = default_thresholds(2)
    table[0, Param.home_sys] = 130.0
    assert len(close(state)) == 0
    assert len(only(close(state, table=table), Rule.BP_HOME_HIGH)) == 1
    table[0, Param.home_min_n] = NAN  # a target that is not a number never fires
    assert len(close(state, table=table)) == 0


def test_artifact_control_unbound_rejected_and_valueless_readings_stay_out(impl):
    state = new_state(impl)
    state.update(bp_days({d: [(130.0, 80.0)] * 3 for d in range(D - 6, D + 1)}))
    noise = bp_days({d: [(250.0, 140.0)] * 6 for d in range(D - 6, D + 1)})
    noise["flags"][0::6] = Flag.ARTIFACT
    noise["flags"][1::6] = Flag.CONTROL
    noise["patient"][2::6] = -1
    noise["reason"][3::6] = Reason.RANGE
    noise["v"][4::6, 1] = NAN
    noise["kind"][5::6] = Kind.GLU_CONTEXT
    before = state.arrays()["acc"]
    assert state.update(noise) == 0
    assert state.arrays()["acc"].tobytes() == before.tobytes()
    assert len(close(state)) == 0


def test_late_readings_land_on_the_day_they_were_measured(impl):
    state = new_state(impl)
    state.update(bp_days({D: [(150.0, 90.0)] * 8}))
    late = bp_days({D - 3: [(150.0, 90.0)] * 4, D - 2: [(150.0, 90.0)] * 5})
    late["flags"] |= np.uint16(Flag.LATE)
    state.update(late)
    assert slot(state, 0, Metric.BP, D - 3)[[Acc.DAY, Acc.N, Acc.SUM0]].tolist() == [D - 3, 4.0, 600.0]
    assert only(close(state), Rule.BP_HOME_HIGH)["values"][0].tolist() == [150.0, 90.0, 13.0, 2.0]


def test_ring_keeps_sixteen_days_and_skips_older_readings(impl):
    state = new_state(impl)
    state.update(bp_days({D: [(120.0, 80.0)]}))
    # D - 16 shares D's slot, which holds a newer day: left out and counted
    assert state.update(bp_days({D - 16: [(120.0, 80.0)] * 2})) == 2
    assert slot(state, 0, Metric.BP, D)[[Acc.DAY, Acc.N]].tolist() == [D, 1.0]
    # D - 15 has a slot of its own until day D + 1 takes it over
    assert state.update(bp_days({D - 15: [(120.0, 80.0)]})) == 0
    assert slot(state, 0, Metric.BP, D - 15)[Acc.DAY] == D - 15
    state.update(bp_days({D + 1: [(125.0, 85.0)]}))
    assert slot(state, 0, Metric.BP, D + 1)[[Acc.DAY, Acc.N, Acc.SUM0, Acc.SUM1]].tolist() == [D + 1, 1.0, 125.0, 85.0]


def test_clock_reset_readings_do_not_disturb_current_days(impl):
    state = new_state(impl)
    state.update(bp_days({D: [(120.0, 80.0)]}))
    y2000 = 946_684_800_000 // DAY_MS
    assert state.update(bp_days({y2000: [(120.0, 80.0)]})) == int(y2000 % RING_DAYS == D % RING_DAYS)
    assert slot(state, 0, Metric.BP, D)[[Acc.DAY, Acc.N]].tolist() == [D, 1.0]


@pytest.mark.parametrize(("tz", "utc_hour", "local_day"), [
    (180, 20.99, D), (180, 21.0, D + 1), (-300, 4.99, D - 1), (-300, 5.0, D), (0, 23.99, D), (0, 24.0, D + 1),
])
def test_local_day_boundary_follows_the_patient_zone(impl, tz, utc_hour, local_day):
    state = new_state(impl, 2, [0, tz])
    state.update(make_batch([(1, Kind.BP, D * DAY_MS + int(utc_hour * HOUR), [120.0, 80.0], 0)]))
    acc = state.arrays()["acc"][1 * N_METRICS + Metric.BP]
    assert acc[:, Acc.DAY][acc[:, Acc.DAY] != EMPTY_DAY].tolist() == [local_day]


# ---- CGM_TIR -----------------------------------------------------------------------------

def cgm_table(per_day: float = 10.0):
    table = default_thresholds(2)
    table[:, Param.cgm_readings_per_day] = per_day
    return table


def fortnight(day_values: list[float], days: int = 14) -> dict[int, list[float]]:
    return {d: list(day_values) for d in range(D - days + 1, D + 1)}


def test_tir_exactly_seventy_percent_does_not_fire_below_it_does(impl):
    state = new_state(impl)
    state.update(cgm_days(fortnight([6.0] * 7 + [10.01] * 3)))
    assert len(close(state, table=cgm_table())) == 0
    state.update(cgm_days({D: [11.0]}))
    alert = only(close(state, table=cgm_table()), Rule.CGM_TIR)
    tir, tbr, _, data = alert["values"][0]
    assert tir == pytest.approx(100 * 98 / 141) and tbr == 0.0 and data == pytest.approx(100 * 141 / 140)


def test_tbr_over_four_percent_fires_and_censored_lo_counts_below(impl):
    state = new_state(impl)
    state.update(cgm_days(fortnight([6.0] * 10)))
    state.update(cgm_days({D - 1: [3.89] * 5}))
    assert len(close(state, table=cgm_table())) == 0  # 5 / 145 = 3.4 %
    state.update(cgm_days({D: [NAN]}, flags=Flag.RANGE_LO))
    alert = only(close(state, table=cgm_table()), Rule.CGM_TIR)
    assert alert["values"][0, 1] == pytest.approx(100 * 6 / 146)
    assert slot(state, 0, Metric.CGM, D)[[Acc.N, Acc.N_VALUED, Acc.N_BELOW_L2, Acc.N_BELOW]].tolist() == [11, 10, 1, 1]


def test_coefficient_of_variation_over_valued_readings(impl):
    narrow = [4.5, 9.5] * 5  # all in range; CV = 2.5 / 7 = 35.7 %
    state = new_state(impl)
    state.update(cgm_days(fortnight(narrow)))
    assert len(close(state, table=cgm_table())) == 0
    wide = [4.0, 10.0] * 5  # CV = 3 / 7 = 42.9 %
    state.update(cgm_days(fortnight(wide), patient=1))
    tir, tbr, cv, data = only(close(state, 1, table=cgm_table()), Rule.CGM_TIR)["values"][0]
    assert (tir, tbr, data) == (100.0, 0.0, 100.0)
    assert cv == pytest.approx(100 * np.std(wide) / np.mean(wide))
    # censored readings lower TIR but are not in the CV
    state.update(cgm_days({D: [NAN] * 3}, flags=Flag.RANGE_HI))
    table = cgm_table()
    table[0, Param.cv_max_pct] = 30.0
    tir, _, cv, _ = only(close(state, table=table), Rule.CGM_TIR)["values"][0]
    assert tir == pytest.approx(100 * 140 / 143)
    assert cv == pytest.approx(100 * np.std(narrow) / np.mean(narrow))


@pytest.mark.parametrize(("per_day", "fires"), [(98, True), (97, False)])
def test_tir_needs_seventy_percent_sensor_data(impl, per_day, fires):
    state = new_state(impl)
    state.update(cgm_days(fortnight([2.5] * per_day)))
    alerts = close(state, table=cgm_table(140.0))  # 70 % of 14 x 140 readings = 14 x 98
    assert len(only(alerts, Rule.CGM_TIR)) == fires


def test_default_coverage_is_288_readings_a_day(impl):
    state = new_state(impl)
    state.update(cgm_days(fortnight([2.5] * 202)))  # 2828 >= 70 % of 4032 = 2822.4
    assert only(close(state), Rule.CGM_TIR)["values"][0, 3] == pytest.approx(100 * 2828 / 4032)


def test_glucometer_readings_feed_their_own_window_not_cgm(impl):
    state = new_state(impl)
    batch = cgm_days(fortnight([2.5] * 10))
    batch["kind"] = Kind.GLU
    state.update(batch)
    assert len(close(state, table=cgm_table())) == 0
    assert slot(state, 0, Metric.GLU, D)[Acc.N] == 10


def test_both_rules_for_one_patient_in_order(impl):
    state = new_state(impl)
    state.update(cgm_days(fortnight([2.5] * 10)))
    state.update(bp_days({d: [(150.0, 95.0)] * 3 for d in range(D - 6, D + 1)}))
    alerts = state.close_days(np.array([1, 0], np.int32), np.array([D, D], np.int32), cgm_table())
    assert alerts.dtype == WINDOW_ALERT_DTYPE
    assert [(int(a["patient"]), Rule(a["rule"])) for a in alerts] == [(0, Rule.BP_HOME_HIGH), (0, Rule.CGM_TIR)]


# ---- state management --------------------------------------------------------------------

def test_grow_keeps_state_and_new_patients_start_empty(impl):
    state = new_state(impl, 1)
    state.update(bp_days({d: [(150.0, 95.0)] * 3 for d in range(D - 6, D + 1)}))
    state.grow(3)
    state.tz_min[2] = 60
    assert state.n_patients == 3 and state.tz_min.tolist() == [0, 0, 60]
    assert len(only(close(state), Rule.BP_HOME_HIGH)) == 1
    assert (state.arrays()["acc"][N_METRICS:, :, Acc.DAY] == EMPTY_DAY).all()
    state.update(bp_days({D: [(120.0, 80.0)]}, patient=2, tz=60))
    assert slot(state, 2, Metric.BP, D)[Acc.N] == 1.0
    with pytest.raises(ValueError, match="shrink"):
        state.grow(2)


@pytest.mark.parametrize("source", sorted(IMPLEMENTATIONS))
def test_arrays_round_trip_across_implementations(impl, source):
    original = new_state(IMPLEMENTATIONS[source], 2, [0, -300])
    original.update(bp_days({d: [(150.0, 95.0)] * 3 for d in range(D - 6, D + 1)}))
    original.update(cgm_days(fortnight([2.5] * 10), patient=1))
    arrays = original.arrays()
    assert arrays["acc"].shape == (2 * N_METRICS, RING_DAYS, len(Acc)) and arrays["tz_min"].dtype == np.int16
    restored = impl.WindowState.from_arrays(**arrays)
    assert restored.arrays()["acc"].tobytes() == arrays["acc"].tobytes()
    assert restored.tz_min.tolist() == [0, -300]
    table = cgm_table()
    assert_same_alerts(close(restored, 0, D, table), close(original, 0, D, table))
    with pytest.raises(ValueError, match="shape"):
        impl.WindowState.from_arrays(arrays["tz_min"][:1], arrays["acc"])


def test_bad_arguments_raise(impl):
    with pytest.raises(ValueError, match="tz_min"):
        impl.WindowState(2, np.zeros(3, np.int16))
    state = new_state(impl)
    with pytest.raises(IndexError, match="patient index"):
        close(state, patient=2)
    with pytest.raises(ValueError, match="one length"):
        state.close_days(np.array([0, 1], np.int32), np.array([D], np.int32), default_thresholds(2))
    with pytest.raises(IndexError, match="patient index"):
        state.update(bp_days({D: [(120.0, 80.0)]}, patient=2))


# ---- compiled == twin --------------------------------------------------------------------

N_PATIENTS = 3


def assert_same_alerts(compiled: np.ndarray, twin: np.ndarray) -> None:
    assert compiled.dtype == twin.dtype == WINDOW_ALERT_DTYPE and compiled.shape == twin.shape
    for name in WINDOW_ALERT_DTYPE.names:
        assert compiled[name].tobytes() == twin[name].tobytes(), name


def assert_same_state(compiled, twin) -> None:
    a, b = compiled.arrays(), twin.arrays()
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].tobytes() == b[name].tobytes(), name


closing = st.tuples(st.integers(0, N_PATIENTS - 1),
                    st.integers(BASE_DAY - 30, BASE_DAY + 30) | st.sampled_from([10957, 0, -1]))


def days_after_readings(batches_: list[np.ndarray], tz: list[int]) -> list[tuple[int, int]]:
    """(patient, day) pairs that close windows holding some of the readings."""
    pairs = {(int(p), (int(t) + tz[p] * 60_000) // DAY_MS + offset)
             for batch in batches_ for p, t in zip(batch["patient"], batch["t"]) if p >= 0
             for offset in (0, 1, 6, 13)}
    return sorted((p, d) for p, d in pairs if -(2**31) <= d < 2**31)


@differential
@given(data=st.data(), tz=st.lists(tz_minutes, min_size=N_PATIENTS, max_size=N_PATIENTS),
       table=thresholds(N_PATIENTS))
def test_compiled_equals_twin(data, tz, table):
    compiled = core.compiled.WindowState(N_PATIENTS, np.array(tz, np.int16))
    twin = core.reference.WindowState(N_PATIENTS, np.array(tz, np.int16))
    ingested = data.draw(st.lists(mixed_batches(N_PATIENTS), min_size=1, max_size=3))
    for batch in ingested:
        use = data.draw(st.sampled_from([None, table]))
        assert compiled.update(batch, use) == twin.update(batch, use)
    assert_same_state(compiled, twin)
    candidates = days_after_readings(ingested, tz)
    to_close = data.draw(st.lists(st.sampled_from(candidates) | closing if candidates else closing, max_size=8))
    patients = np.array([p for p, _ in to_close], np.int32)
    days = np.array([d for _, d in to_close], np.int32)
    alerts = compiled.close_days(patients, days, table)
    for name in {Rule(r).name for r in alerts["rule"]}:
        event(f"raised {name}")
    assert_same_alerts(alerts, twin.close_days(patients, days, table))


class WindowStateMachine(RuleBasedStateMachine):
    """Ingest, late batches, day closes, registry growth and restarts from persisted arrays:
    the compiled state and alerts never differ from the twin's."""

    @initialize(tz=st.lists(tz_minutes, min_size=1, max_size=N_PATIENTS), table=thresholds(N_PATIENTS + 2))
    def start(self, tz, table):
        self.compiled = core.compiled.WindowState(len(tz), np.array(tz, np.int16))
        self.twin = core.reference.WindowState(len(tz), np.array(tz, np.int16))
        self.table = table
        self.today = BASE_DAY

    def _ingest(self, batch):
        table = self.table[: self.compiled.n_patients]
        assert self.compiled.update(batch, table) == self.twin.update(batch, table)

    @rule(data=st.data())
    def ingest(self, data):
        self._ingest(data.draw(mixed_batches(self.compiled.n_patients)))

    @rule(data=st.data(), days_back=st.integers(1, 2 * RING_DAYS))
    def late_batch(self, data, days_back):
        batch = data.draw(batches(self.compiled.n_patients))
        batch["t"] = batch["t"] % DAY_MS + (self.today - days_back) * DAY_MS
        batch["flags"] |= np.uint16(Flag.LATE)
        self._ingest(batch)

    @rule(patients=st.lists(st.integers(0, N_PATIENTS + 1), max_size=4), back=st.integers(-2, 10))
    def close_day(self, patients, back):
        kept = np.array([p for p in patients if p < self.compiled.n_patients], np.int32)
        days = np.full(len(kept), self.today - back, np.int32)
        table = self.table[: self.compiled.n_patients]
        alerts = self.compiled.close_days(kept, days, table)
        for name in {Rule(r).name for r in alerts["rule"]}:
            event(f"raised {name}")
        assert_same_alerts(alerts, self.twin.close_days(kept, days, table))
        self.today += 1

    @precondition(lambda self: self.compiled.n_patients < N_PATIENTS + 2)
    @rule(tz=tz_minutes)
    def grow(self, tz):
        n = self.compiled.n_patients + 1
        self.compiled.grow(n)
        self.twin.grow(n)
        self.compiled.tz_min[-1] = tz
        self.twin.tz_min[-1] = tz

    @rule(swap=st.booleans())
    def restore_from_arrays(self, swap):
        saved_c, saved_t = self.compiled.arrays(), self.twin.arrays()
        if swap:
            saved_c, saved_t = saved_t, saved_c
        self.compiled = core.compiled.WindowState.from_arrays(**saved_c)
        self.twin = core.reference.WindowState.from_arrays(**saved_t)

    @invariant()
    def same_state(self):
        assert_same_state(self.compiled, self.twin)


TestWindowStateMachine = WindowStateMachine.TestCase
TestWindowStateMachine.settings = settings(max_examples=max(DIFFERENTIAL_EXAMPLES // 10, 50), stateful_step_count=20)


def test_from_arrays_adopts_an_aligned_state_array_and_copies_any_other():
    """``adopt``: the store's freshly loaded array becomes the state (no second 600 MB for
    200,000 patients); an array the caller keeps using is copied."""
    from core.window_layout import empty_slots

    tz = np.zeros(3, dtype=np.int16)
    loaded = empty_slots(3)
    adopted = core.compiled.WindowState.from_arrays(tz, loaded, adopt=True)
    loaded[4, 0, Acc.N] = 7.0
    assert adopted.arrays()["acc"][4, 0, Acc.N] == 7.0  # the same memory
    kept = empty_slots(3)
    copied = core.compiled.WindowState.from_arrays(tz, kept)
    kept[4, 0, Acc.N] = 7.0
    assert copied.arrays()["acc"][4, 0, Acc.N] == 0.0
    raw = np.zeros(kept.size + 8)
    start = next(k for k in range(8) if (raw.ctypes.data + 8 * k) % 64)  # off the cache line
    misaligned = raw[start:start + kept.size].reshape(kept.shape)
    from_misaligned = core.compiled.WindowState.from_arrays(tz, misaligned, adopt=True)
    misaligned[4, 0, Acc.N] = 7.0
    assert from_misaligned.arrays()["acc"][4, 0, Acc.N] == 0.0  # copied: kernels need aligned slots
    assert np.array_equal(core.reference.WindowState.from_arrays(tz, empty_slots(3), adopt=True).arrays()["acc"],
                          empty_slots(3))
