"""The GATT encoders round-trip through the core's decoders."""

import datetime

import numpy as np
import pytest

import core.compiled
from adapters import gatt_encode as enc
from core.codes import Flag, GattError, Kind

WHEN = datetime.datetime(2025, 11, 24, 7, 30, 15)
WHEN_MS = int(WHEN.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


@pytest.mark.parametrize("value, exponent, raw", [(140, 0, 0x008C), (-1.5, -1, 0xFFF1), (0.05, -3, 0xD032)])
def test_sfloat(value, exponent, raw):
    assert enc.sfloat(value, exponent) == raw


def test_sfloat_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        enc.sfloat(5000, 0)


def test_blood_pressure_round_trip():
    value = enc.blood_pressure(enc.sfloat(16, -1), enc.sfloat(11, -1), enc.sfloat(13, -1), kpa=True, when=WHEN,
                               pulse_raw=enc.sfloat(72), user=2, status=0x0002)
    records, error = core.compiled.gatt_decode(0x2A35, value, tz_min=180)
    assert error == GattError.OK
    (r,) = records
    assert r["kind"] == Kind.BP and r["user"] == 2 and r["status"] == 2
    assert r["v"][0] == pytest.approx(16 * 7.50062) and r["v"][3] == 72
    assert r["t"] == WHEN_MS - 180 * 60_000
    assert r["flags"] & Flag.ARTIFACT


def test_glucose_round_trip():
    value = enc.glucose(7, WHEN, offset_min=-5, concentration_raw=enc.sfloat(99e-5, -5), context_follows=True)
    (r,), error = core.compiled.gatt_decode(0x2A18, value)
    assert error == GattError.OK
    assert r["seq"] == 7 and r["t"] == WHEN_MS - 5 * 60_000
    assert r["v"][0] == pytest.approx(99 / 18.016)
    assert r["flags"] & Flag.CONTEXT_FOLLOWS


def test_glucose_context_round_trip():
    value = enc.glucose_context(7, carbohydrate=(1, enc.sfloat(0.05, -3)), meal=2, tester_health=(1, 3),
                                exercise=(1800, 60), medication=(1, enc.sfloat(5e-6, -6), False), hba1c_raw=enc.sfloat(7.1, -1))
    (r,), error = core.compiled.gatt_decode(0x2A34, value)
    assert error == GattError.OK
    assert r["kind"] == Kind.GLU_CONTEXT and r["seq"] == 7
    assert list(r["aux"][:6]) == [1, 2, 1, 3, 60, 1]
    assert r["v"][0] == pytest.approx(0.05) and r["v"][2] == pytest.approx(7.1) and r["v"][3] == 1800


def test_cgm_records_round_trip_with_and_without_crc():
    value = b"".join(enc.cgm_record(enc.sfloat(100 + k), 5 * k, trend_raw=enc.sfloat(-1.8, -1), quality_raw=enc.sfloat(90),
                                    warning=0x00, crc=k % 2 == 0) for k in range(3))
    records, error = core.compiled.gatt_decode(0x2AA7, value, cgm_start=WHEN_MS)
    assert error == GattError.OK
    assert records["t"].tolist() == [WHEN_MS, WHEN_MS + 300_000, WHEN_MS + 600_000]
    assert np.allclose(records["v"][:, 0], np.array([100, 101, 102]) / 18.016)
    assert np.allclose(records["v"][:, 1], -1.8 / 18.016)
