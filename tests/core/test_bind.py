"""Patient binding by device, user slot and measurement time."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import core
from core.bindings import OPEN_END, Bindings
from core.codes import NO_PATIENT, NO_USER, Kind, Reason
from tests.conftest import differential
from tests.core.strategies import batches

JAN, FEB, MAR = 1_767_225_600_000, 1_769_904_000_000, 1_772_323_200_000  # 2026-01/02/03-01

BINDINGS = Bindings.from_tuples(
    [
        (0, NO_USER, JAN, FEB, 10),   # device 0 rented to patient 10 in January,
        (0, NO_USER, FEB, OPEN_END, 11),  # then re-issued to patient 11
        (1, 1, JAN, OPEN_END, 20),    # a family cuff: slot 1 is patient 20,
        (1, 2, JAN, OPEN_END, 21),    # slot 2 patient 21
        (2, NO_USER, JAN, OPEN_END, 30),  # any slot of device 2 is patient 30,
        (2, 3, JAN, OPEN_END, 31),    # except slot 3
    ],
    n_devices=4,
)


def bound(impl, device, user, t, reason=Reason.OK):
    batch = core.empty_batch(1)
    batch["kind"], batch["device"], batch["user"], batch["t"], batch["reason"] = Kind.BP, device, user, t, reason
    impl.bind(batch["device"], batch["user"], batch["t"], batch["reason"], batch["patient"], BINDINGS)
    return int(batch["patient"][0]), Reason(batch["reason"][0])


@pytest.mark.parametrize(
    "device, user, t, expected",
    [
        (0, NO_USER, JAN, (10, Reason.OK)),
        (0, NO_USER, FEB - 1, (10, Reason.OK)),
        (0, NO_USER, FEB, (11, Reason.OK)),
        (0, NO_USER, JAN - 1, (NO_PATIENT, Reason.UNBOUND)),
        (0, 5, MAR, (11, Reason.OK)),
        (1, 1, MAR, (20, Reason.OK)),
        (1, 2, MAR, (21, Reason.OK)),
        (1, 3, MAR, (NO_PATIENT, Reason.UNBOUND)),
        (1, NO_USER, MAR, (NO_PATIENT, Reason.UNBOUND)),
        (2, 1, MAR, (30, Reason.OK)),
        (2, 3, MAR, (31, Reason.OK)),
        (3, NO_USER, MAR, (NO_PATIENT, Reason.UNBOUND)),
        (7, NO_USER, MAR, (NO_PATIENT, Reason.UNBOUND)),
    ],
)
def test_reading_belongs_to_the_patient_bound_at_measurement_time(impl, device, user, t, expected):
    assert bound(impl, device, user, t) == expected


def test_rejected_readings_are_not_bound(impl):
    assert bound(impl, 0, NO_USER, JAN, Reason.RANGE) == (NO_PATIENT, Reason.RANGE)


def test_binding_to_an_unknown_device_index_is_refused():
    with pytest.raises(ValueError, match="device index"):
        Bindings.from_tuples([(5, NO_USER, JAN, FEB, 1)], n_devices=2)


binding_rows = st.lists(
    st.tuples(st.integers(0, 4), st.sampled_from([NO_USER, 0, 1, 2]), st.integers(0, 2**62), st.integers(0, 2**62),
              st.integers(0, 9)),
    max_size=12,
)


@differential
@given(batches(), binding_rows)
def test_compiled_equals_twin(batch, rows):
    bindings = Bindings.from_tuples([(d, u, min(a, b), max(a, b), p) for d, u, a, b, p in rows], n_devices=5)
    twin = batch.copy()
    for impl, b in ((core.compiled, batch), (core.reference, twin)):
        impl.bind(b["device"], b["user"], b["t"], b["reason"], b["patient"], bindings)
    assert batch.tobytes() == twin.tobytes()
    assert (batch["patient"][batch["reason"] == Reason.OK] != NO_PATIENT).all()
    assert (batch["patient"][batch["reason"] == Reason.UNBOUND] == NO_PATIENT).all()
