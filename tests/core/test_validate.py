"""Validation: examples on both implementations, and compiled == twin under hypothesis."""

import numpy as np
import pytest
from hypothesis import given

import core
from core.codes import Flag, Kind, Reason
from core.validate import EARLIEST_T_MS
from tests.conftest import differential
from tests.core.strategies import DAY_MS, NOW_MS, batches

NAN, INF = float("nan"), float("inf")


def one(kind, v, t=NOW_MS, flags=Flag.HAS_TIME, rx=NOW_MS, reason=Reason.OK):
    batch = core.empty_batch(1)
    batch["kind"], batch["t"], batch["rx"], batch["flags"], batch["reason"] = kind, t, rx, flags, reason
    batch["v"][0, : len(v)] = v
    return batch


def run(impl, batch, now=NOW_MS):
    impl.validate(batch["kind"], batch["flags"], batch["t"], batch["rx"], batch["v"], batch["reason"], now)
    return Reason(batch["reason"][0])


@pytest.mark.parametrize(
    "v, expected",
    [
        ((120, 80, NAN, 70), Reason.OK),
        ((40, 20, NAN, NAN), Reason.OK),
        ((300, 200, NAN, 250), Reason.OK),
        ((39.9, 20, NAN, NAN), Reason.RANGE),
        ((300.1, 80, NAN, NAN), Reason.RANGE),
        ((120, 19.9, NAN, NAN), Reason.RANGE),
        ((120, 200.1, NAN, NAN), Reason.RANGE),
        ((80, 80, NAN, NAN), Reason.RANGE),
        ((120, 80, NAN, 19.9), Reason.RANGE),
        ((120, 80, NAN, 250.1), Reason.RANGE),
        ((NAN, 80, NAN, NAN), Reason.NOTNUM),
        ((120, INF, NAN, NAN), Reason.NOTNUM),
        ((120, 80, INF, NAN), Reason.NOTNUM),
        ((120, 80, NAN, -INF), Reason.NOTNUM),
    ],
)
def test_blood_pressure_limits(impl, v, expected):
    assert run(impl, one(Kind.BP, v)) == expected


@pytest.mark.parametrize("kind", [Kind.GLU, Kind.CGM])
@pytest.mark.parametrize(
    "glucose, flags, expected",
    [
        (5.5, 0, Reason.OK),
        (0.5, 0, Reason.OK),
        (40.0, 0, Reason.OK),
        (0.49, 0, Reason.RANGE),
        (40.01, 0, Reason.RANGE),
        (NAN, 0, Reason.NOTNUM),
        (-INF, 0, Reason.NOTNUM),
        (NAN, Flag.RANGE_LO, Reason.OK),
        (NAN, Flag.RANGE_HI, Reason.OK),
    ],
)
def test_glucose_limits_and_censored_readings(impl, kind, glucose, flags, expected):
    assert run(impl, one(kind, (glucose,), flags=Flag.HAS_TIME | flags)) == expected


def test_cgm_infinite_trend_is_notnum(impl):
    assert run(impl, one(Kind.CGM, (5.0, INF))) == Reason.NOTNUM


@pytest.mark.parametrize(
    "t, expected",
    [
        (NOW_MS + 5 * 60_000, Reason.OK),
        (NOW_MS + 5 * 60_000 + 1, Reason.FUTURE),
        (NOW_MS - 400 * DAY_MS, Reason.OK),
        (NOW_MS - 400 * DAY_MS - 1, Reason.STALE),
        (946_684_800_000, Reason.STALE),  # 2000-01-01: a meter whose clock was reset
    ],
)
def test_measurement_time_limits(impl, t, expected):
    assert run(impl, one(Kind.BP, (120, 80), t=t)) == expected


def test_before_2015_is_stale_even_when_recent_to_the_gateway(impl):
    now = EARLIEST_T_MS + DAY_MS
    assert run(impl, one(Kind.BP, (120, 80), t=EARLIEST_T_MS - 1, rx=now), now=now) == Reason.STALE


def test_value_reasons_come_before_time_reasons(impl):
    assert run(impl, one(Kind.BP, (NAN, 80), t=0)) == Reason.NOTNUM


def test_missing_time_takes_arrival_time(impl):
    batch = one(Kind.GLU, (5.0,), t=0, flags=0, rx=NOW_MS - 1000)
    assert run(impl, batch) == Reason.OK
    assert batch["t"][0] == NOW_MS - 1000
    assert batch["flags"][0] == Flag.HAS_TIME | Flag.T_FROM_RX


def test_reading_measured_over_a_day_before_arrival_is_late(impl):
    batch = one(Kind.BP, (120, 80), t=NOW_MS - DAY_MS - 1)
    assert run(impl, batch) == Reason.OK
    assert batch["flags"][0] & Flag.LATE
    exactly_a_day = one(Kind.BP, (120, 80), t=NOW_MS - DAY_MS)
    run(impl, exactly_a_day)
    assert not exactly_a_day["flags"][0] & Flag.LATE


def test_context_records_get_time_but_no_value_checks(impl):
    batch = one(Kind.GLU_CONTEXT, (NAN,), t=0, flags=0)
    assert run(impl, batch) == Reason.OK
    assert batch["t"][0] == NOW_MS


def test_context_records_get_time_checks(impl):
    """Regression (tests/faults/test_hostile_input.py): a context record whose hub rx was 0
    was stored at 1970; its time is checked like any reading's."""
    assert run(impl, one(Kind.GLU_CONTEXT, (NAN,), t=0, flags=0, rx=0)) == Reason.STALE
    assert run(impl, one(Kind.GLU_CONTEXT, (NAN,), t=EARLIEST_T_MS - 1)) == Reason.STALE
    assert run(impl, one(Kind.GLU_CONTEXT, (NAN,), t=NOW_MS + DAY_MS)) == Reason.FUTURE


def test_unknown_kind_is_schema_and_earlier_reasons_stay(impl):
    assert run(impl, one(Kind.NONE, (120, 80))) == Reason.SCHEMA
    assert run(impl, one(Kind.BP, (NAN, NAN), reason=Reason.DECODE)) == Reason.DECODE


@differential
@given(batches())
def test_compiled_equals_twin(batch):
    twin = batch.copy()
    core.compiled.validate(batch["kind"], batch["flags"], batch["t"], batch["rx"], batch["v"], batch["reason"], NOW_MS)
    core.reference.validate(twin["kind"], twin["flags"], twin["t"], twin["rx"], twin["v"], twin["reason"], NOW_MS)
    assert batch.tobytes() == twin.tobytes()
    assert np.isin(batch["reason"], [int(r) for r in Reason]).all()
