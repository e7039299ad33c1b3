"""Content fingerprints of reading-map readings."""

import numpy as np
from hypothesis import given

import core
from core.codes import Flag, Kind
from core.reference.fingerprint import fnv1a64
from tests.conftest import differential
from tests.core.strategies import batches


def fingerprints(impl, batch):
    out = np.zeros(len(batch), dtype=np.uint64)
    impl.fingerprint_readings(batch["kind"], batch["flags"], batch["user"], batch["t"], batch["v"], out)
    return out.tolist()


def test_fnv1a64_known_vectors():
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8


def test_same_reading_same_fingerprint_any_nan_payload(impl):
    batch = core.empty_batch(3)
    batch["kind"], batch["t"] = Kind.BP, 1_764_072_000_000
    batch["v"][:, :2] = (120.0, 80.0)
    batch["v"][1, 3] = np.frombuffer(np.uint64(0x7FF0000000000001).tobytes(), dtype=np.float64)[0]
    batch["flags"][2] = Flag.HAS_TIME | Flag.T_FROM_RX
    a, b, c = fingerprints(impl, batch)
    assert a == b == c


def test_time_value_user_and_censoring_change_the_fingerprint(impl):
    batch = core.empty_batch(5)
    batch["kind"], batch["t"] = Kind.GLU, 1_764_072_000_000
    batch["v"][:, 0] = 5.5
    batch["t"][1] += 1
    batch["v"][2, 0] = 5.6
    batch["user"][3] = 1
    batch["flags"][4] = Flag.RANGE_LO
    assert len(set(fingerprints(impl, batch))) == 5


@differential
@given(batches())
def test_compiled_equals_twin(batch):
    assert fingerprints(core.compiled, batch) == fingerprints(core.reference, batch)
