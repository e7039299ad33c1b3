"""GATT decoders: hand-built spec examples on both implementations, then compiled vs twin.

Known-value tests run on ``core.gatt`` (C) and ``core.reference.gatt`` (twin) alike; the
differential tests require bit-identical records, value indexes and errors.
"""

from __future__ import annotations

import calendar
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import gatt as compiled_gatt
from core.codes import Flag, GattError, Kind, Reason, Unit
from core.layout import GATT_CONTEXT_DTYPE, READING_DTYPE, pack_values
from core.reference import gatt as reference_gatt
from tests.conftest import differential
from tests.core import gatt_values as gv
from tests.core.gatt_values import BPM, CGM, CONTEXT, GLUCOSE, bpm, cgm, context, date_time, glucose, sf, u16

DECODERS = {"compiled": compiled_gatt, "reference": reference_gatt}


@pytest.fixture(params=sorted(DECODERS))
def dec(request):
    """``core.gatt`` or ``core.reference.gatt``."""
    return DECODERS[request.param]


def utc_ms(*when: int) -> int:
    return calendar.timegm(when) * 1000


def one(dec, uuid: int, value: bytes, **ctx) -> np.void:
    records, error = dec.decode(uuid, value, **ctx)
    assert error == GattError.OK
    assert len(records) == 1
    return records[0]


def error_of(dec, uuid: int, value: bytes, **ctx) -> GattError:
    records, error = dec.decode(uuid, value, **ctx)
    assert len(records) == 0
    return error


def fnv1a(octets: bytes) -> int:
    h = 0xCBF29CE484222325
    for octet in octets:
        h = ((h ^ octet) * 0x100000001B3) & (2**64 - 1)
    return h


# ---- SFLOAT ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0x0050, 80.0),
        (0xF2D5, 72.5),        # mantissa 725, exponent -1
        (0x1001, 10.0),
        (0x0FFF, -1.0),        # mantissa -1
        (0x7001, 1e7),
        (0x8001, 1 / 1e8),     # exponent -8
        (0x1800, -20480.0),    # mantissa -2048 with exponent 1 is a number, not NRes
        (0xE7FD, 2045 / 100),
        (0x0000, 0.0),
    ],
)
def test_sfloat_values(dec, raw, expected):
    record = one(dec, BPM, bpm(systolic=u16(raw)))
    assert record["v"][0] == expected


@pytest.mark.parametrize("special", gv.SFLOAT_SPECIALS)
def test_sfloat_specials_are_absent(dec, special):
    record = one(dec, BPM, bpm(systolic=u16(special), diastolic=u16(special), mean=u16(special), pulse=u16(special)))
    assert np.isnan(record["v"]).all()
    assert record["flags"] & (Flag.RANGE_LO | Flag.RANGE_HI) == 0


# ---- 0x2A35 blood pressure ---------------------------------------------------------------


def test_bpm_every_field(dec):
    value = bpm(sf(121), sf(80), sf(93), time=date_time(2020, 3, 15, 8, 30, 0), pulse=sf(72), user=2, status=0x0004)
    record = one(dec, BPM, value, device=7, rx=123, tz_min=180)
    assert list(record["v"]) == [121.0, 80.0, 93.0, 72.0]
    assert record["t"] == utc_ms(2020, 3, 15, 8, 30, 0) - 180 * 60_000
    assert record["flags"] == Flag.HAS_TIME
    assert (record["user"], record["status"], record["unit_in"]) == (2, 0x0004, Unit.MMHG)
    assert (record["kind"], record["reason"], record["device"], record["rx"], record["patient"]) == (
        Kind.BP, Reason.OK, 7, 123, -1)
    assert (record["aux"] == 0xFF).all()
    assert record["fingerprint"] == fnv1a(b"\x35\x2a" + value)


def test_bpm_flags_zero_has_only_pressures(dec):
    record = one(dec, BPM, bpm())
    assert list(record["v"][:3]) == [121.0, 80.0, 93.0]
    assert math.isnan(record["v"][3])
    assert (record["flags"], record["user"], record["status"], record["t"]) == (0, 0xFF, 0, 0)


def test_bpm_kpa_is_converted_to_mmhg(dec):
    record = one(dec, BPM, bpm(sf(160, -1), sf(107, -1), u16(gv.NAN), kpa=True, pulse=sf(60)))
    assert record["v"][0] == 16.0 * 7.50062
    assert record["v"][1] == 10.7 * 7.50062
    assert math.isnan(record["v"][2])
    assert record["v"][3] == 60.0  # pulse is never converted
    assert record["unit_in"] == Unit.KPA


@pytest.mark.parametrize(("bit", "artifact"), [(0, True), (1, True), (2, False), (3, False), (4, False),
                                               (5, True), (6, False), (15, False)])
def test_bpm_status_bits_and_artifact(dec, bit, artifact):
    record = one(dec, BPM, bpm(status=1 << bit))
    assert record["status"] == 1 << bit
    assert bool(record["flags"] & Flag.ARTIFACT) == artifact


def test_bpm_user_id_without_time(dec):
    record = one(dec, BPM, bpm(user=0))
    assert record["user"] == 0
    assert not record["flags"] & Flag.HAS_TIME


@pytest.mark.parametrize("unknown", [date_time(0, 3, 15, 8), date_time(2020, 0, 15), date_time(2020, 3, 0),
                                     date_time(0, 0, 0, 25, 61, 61)])
def test_date_with_year_month_or_day_zero_is_unknown(dec, unknown):
    record = one(dec, BPM, bpm(time=unknown))
    assert not record["flags"] & Flag.HAS_TIME
    record = one(dec, GLUCOSE, glucose(base_time=unknown, offset=30))
    assert not record["flags"] & Flag.HAS_TIME
    assert record["flags"] & Flag.HAS_SEQ


@pytest.mark.parametrize("impossible", [
    date_time(2020, 13, 1), date_time(2023, 2, 29), date_time(1900, 2, 29), date_time(2020, 4, 31),
    date_time(2020, 1, 32), date_time(2020, 1, 1, 24), date_time(2020, 1, 1, 0, 60),
    date_time(2020, 1, 1, 0, 0, 60), date_time(1581, 12, 31), date_time(10000, 1, 1),
])
def test_impossible_date_is_an_error(dec, impossible):
    assert error_of(dec, BPM, bpm(time=impossible)) == GattError.DATE
    assert error_of(dec, GLUCOSE, glucose(base_time=impossible)) == GattError.DATE


@pytest.mark.parametrize("possible", [date_time(2000, 2, 29, 23, 59, 59), date_time(2024, 2, 29),
                                      date_time(1582, 1, 1), date_time(9999, 12, 31, 23, 59, 59)])
def test_edge_dates_are_possible(dec, possible):
    record = one(dec, BPM, bpm(time=possible), tz_min=-600)
    year = int.from_bytes(possible[:2], "little")
    assert record["t"] == utc_ms(year, *possible[2:]) + 600 * 60_000


# ---- 0x2A18 glucose ----------------------------------------------------------------------


def test_glucose_kg_per_l(dec):
    value = glucose(seq=513, offset=-90, concentration=sf(95, -5), sample_type=2, location=1, status=0,
                    context_follows=True)
    record = one(dec, GLUCOSE, value, tz_min=60, rx=5, device=3)
    assert record["v"][0] == (95 * 1e-5 * 100000.0) / 18.016 == (0.00095 * 100000.0) / 18.016
    assert record["seq"] == 513
    assert record["t"] == utc_ms(2024, 2, 29, 7, 45, 10) - 90 * 60_000 - 60 * 60_000
    assert record["flags"] == Flag.HAS_TIME | Flag.HAS_SEQ | Flag.CONTEXT_FOLLOWS
    assert (record["unit_in"], record["aux"][0], record["aux"][1]) == (Unit.KG_PER_L, 2, 1)
    assert (record["kind"], record["user"], record["device"], record["rx"]) == (Kind.GLU, 0xFF, 3, 5)
    assert record["fingerprint"] == fnv1a(b"\x18\x2a" + value)


def test_glucose_mol_per_l(dec):
    record = one(dec, GLUCOSE, glucose(concentration=sf(55, -4), mol=True))
    assert record["v"][0] == (55 / 1e4) * 1000.0
    assert record["unit_in"] == Unit.MOL_PER_L


def test_glucose_time_offset_is_signed(dec):
    later = one(dec, GLUCOSE, glucose(offset=0x7FFF))
    earlier = one(dec, GLUCOSE, glucose(offset=-0x8000))
    base = utc_ms(2024, 2, 29, 7, 45, 10)
    assert later["t"] == base + 32767 * 60_000
    assert earlier["t"] == base - 32768 * 60_000


def test_glucose_without_concentration(dec):
    record = one(dec, GLUCOSE, glucose(seq=0xFFFF))
    assert math.isnan(record["v"][0])
    assert (record["unit_in"], record["aux"][0], record["aux"][1], record["seq"]) == (Unit.NONE, 0xFF, 0xFF, 0xFFFF)


@pytest.mark.parametrize(("special", "flag"), [(gv.MINUS_INF, Flag.RANGE_LO), (gv.PLUS_INF, Flag.RANGE_HI)])
def test_glucose_lo_hi_meter(dec, special, flag):
    record = one(dec, GLUCOSE, glucose(concentration=u16(special)))
    assert math.isnan(record["v"][0])
    assert record["flags"] & (Flag.RANGE_LO | Flag.RANGE_HI) == flag


@pytest.mark.parametrize(("bit", "flag"), [
    (0, Flag.BATTERY_LOW), (1, Flag.DEVICE_FAULT), (2, 0), (3, 0), (4, 0), (5, Flag.RANGE_HI), (6, Flag.RANGE_LO),
    (7, 0), (8, 0), (9, 0), (10, Flag.DEVICE_FAULT), (11, Flag.TIME_FAULT), (12, 0), (15, 0),
])
def test_glucose_sensor_status_bits(dec, bit, flag):
    record = one(dec, GLUCOSE, glucose(concentration=sf(100, -5), status=1 << bit))
    assert record["status"] == 1 << bit
    assert record["flags"] & ~(Flag.HAS_TIME | Flag.HAS_SEQ) == flag
    assert record["v"][0] == (100 * 1e-5 * 100000.0) / 18.016


@pytest.mark.parametrize(("sample_type", "location", "control"), [(10, 1, True), (1, 4, True), (1, 1, False),
                                                                  (9, 15, False)])
def test_glucose_control_solution(dec, sample_type, location, control):
    record = one(dec, GLUCOSE, glucose(concentration=sf(100, -5), sample_type=sample_type, location=location))
    assert bool(record["flags"] & Flag.CONTROL) == control
    assert (record["aux"][0], record["aux"][1]) == (sample_type, location)


# ---- 0x2A34 glucose context --------------------------------------------------------------


def test_context_every_field(dec):
    value = context(seq=7, extended=0xAA, carbohydrate=(1, sf(60, -3)), meal=2, tester=1, health=5,
                    exercise=(3600, 50), medication=(1, sf(5, -3)), liters=True, hba1c=sf(71, -1))
    record = one(dec, CONTEXT, value, device=2, rx=9)
    assert record["v"][0] == 60 / 1e3
    assert record["v"][1] == 5 / 1e3
    assert record["v"][2] == 71 / 10
    assert record["v"][3] == 3600.0
    assert list(record["aux"][:6]) == [1, 2, 1, 5, 50, 1]
    assert (record["aux"][6:] == 0xFF).all()
    assert (record["seq"], record["flags"], record["unit_in"], record["kind"]) == (7, Flag.HAS_SEQ, Unit.L,
                                                                                  Kind.GLU_CONTEXT)
    assert record["fingerprint"] == fnv1a(b"\x34\x2a" + value)


def test_context_only_seq(dec):
    record = one(dec, CONTEXT, context(seq=300))
    assert np.isnan(record["v"]).all()
    assert (record["aux"] == 0xFF).all()
    assert (record["seq"], record["unit_in"]) == (300, Unit.NONE)


def test_context_medication_in_kg_and_tester_nibble(dec):
    record = one(dec, CONTEXT, context(medication=(3, sf(2, -6)), tester=3, health=2))
    assert (record["unit_in"], record["v"][1], record["aux"][5]) == (Unit.KG, 2 / 1e6, 3)
    assert (record["aux"][2], record["aux"][3]) == (3, 2)


@pytest.mark.parametrize("flag", [0x01, 0x02, 0x04, 0x08, 0x10, 0x40, 0x80])
def test_context_each_flag_alone_needs_its_field(dec, flag):
    assert error_of(dec, CONTEXT, bytes([flag, 1, 0])) == GattError.TRUNCATED


# ---- 0x2AA7 CGM -------------------------------------------------------------------------


def test_cgm_single_record(dec):
    value = cgm(sf(100), offset_min=65535)
    record = one(dec, CGM, value, device=4, rx=77)
    assert record["v"][0] == 100.0 / 18.016
    assert record["v"][3] == 65535.0
    assert np.isnan(record["v"][1:3]).all()
    assert (record["flags"], record["t"], record["status"], record["unit_in"]) == (0, 0, 0, Unit.MG_PER_DL)
    assert record["fingerprint"] == fnv1a(b"\xa7\x2a" + value)


def test_cgm_time_from_session_start(dec):
    start = utc_ms(2025, 1, 1, 0, 0, 0)
    record = one(dec, CGM, cgm(offset_min=90), cgm_start=start)
    assert record["t"] == start + 90 * 60_000
    assert record["flags"] == Flag.HAS_TIME


def test_cgm_every_field_and_annunciation_order(dec):
    value = cgm(sf(85), 10, status=0x02, cal_temp=0x01, warning=0x40, trend=sf(-20, -1), quality=sf(95), crc=True)
    record = one(dec, CGM, value)
    assert record["status"] == 0x40_01_02  # Status octet bits 0-7, Cal/Temp 8-15, Warning 16-23
    assert record["flags"] == Flag.BATTERY_LOW | Flag.RANGE_LO
    assert record["v"][1] == -2.0 / 18.016
    assert record["v"][2] == 95.0


@pytest.mark.parametrize(("kwargs", "status", "flag"), [
    ({"status": 0x08}, 0x08, Flag.DEVICE_FAULT),
    ({"status": 0x20}, 0x20, Flag.DEVICE_FAULT),
    ({"status": 0x01}, 0x01, 0),
    ({"cal_temp": 0xFF}, 0xFF00, 0),
    ({"warning": 0x80}, 0x800000, Flag.RANGE_HI),
    ({"warning": 0x40}, 0x400000, Flag.RANGE_LO),
    ({"warning": 0x3F}, 0x3F0000, 0),
])
def test_cgm_annunciation_flags(dec, kwargs, status, flag):
    record = one(dec, CGM, cgm(**kwargs))
    assert (record["status"], record["flags"]) == (status, flag)


@pytest.mark.parametrize(("special", "flag"), [(gv.MINUS_INF, Flag.RANGE_LO), (gv.PLUS_INF, Flag.RANGE_HI),
                                               (gv.NAN, 0), (gv.NRES, 0)])
def test_cgm_lo_hi_concentration(dec, special, flag):
    record = one(dec, CGM, cgm(u16(special)))
    assert math.isnan(record["v"][0])
    assert record["flags"] == flag


def test_cgm_several_records_per_value(dec):
    records_octets = [cgm(sf(100), 5), cgm(sf(110), 10, trend=sf(1), crc=True), cgm(sf(120), 15, warning=0x80)]
    records, error = dec.decode(CGM, b"".join(records_octets), cgm_start=0)
    assert error == GattError.OK
    assert list(records["v"][:, 3]) == [5.0, 10.0, 15.0]
    assert list(records["t"]) == [300_000, 600_000, 900_000]
    assert [int(f) for f in records["fingerprint"]] == [fnv1a(b"\xa7\x2a" + r) for r in records_octets]


def test_cgm_crc_mismatch_fails_the_whole_value(dec):
    bad = bytearray(cgm(sf(100), 5, crc=True))
    bad[-1] ^= 0x01
    assert error_of(dec, CGM, cgm() + bytes(bad)) == GattError.CGM_CRC


def test_crc16_mcrf4xx_check_value():
    assert reference_gatt.crc16_mcrf4xx(b"123456789") == 0x6F91


@pytest.mark.parametrize("size", [0, 1, 5, 7, 9, 255])
def test_cgm_size_that_fits_neither_flags_nor_crc(dec, size):
    value = bytes([size]) + cgm()[1:] + bytes(10)
    assert error_of(dec, CGM, value) == GattError.CGM_SIZE


def test_cgm_reserved_flag_bits_are_ignored(dec):
    assert one(dec, CGM, cgm(reserved_flags=0x1C))["v"][0] == 100.0 / 18.016


@pytest.mark.parametrize("tail", [b"\x06", b"\x08\x00\x64\x00"])
def test_cgm_record_running_past_the_value(dec, tail):
    assert error_of(dec, CGM, cgm() + tail) == GattError.TRUNCATED


def test_cgm_time_wraps_instead_of_overflowing(dec):
    records, error = dec.decode(CGM, cgm(offset_min=65535), cgm_start=2**63 - 1)
    assert error == GattError.OK
    assert records[0]["t"] == (2**63 - 1 + 65535 * 60_000) - 2**64


# ---- framing, truncation, unknown --------------------------------------------------------

FULL_VALUES = {
    BPM: bpm(kpa=True, time=date_time(2021, 6, 1), pulse=sf(70), user=1, status=3),
    GLUCOSE: glucose(offset=5, concentration=sf(6, -3), status=0x0800),
    CONTEXT: context(extended=0, carbohydrate=(1, sf(1)), meal=1, health=1, exercise=(1, 1),
                     medication=(1, sf(1)), hba1c=sf(1)),
    CGM: cgm(status=1, cal_temp=1, warning=1, trend=sf(1), quality=sf(1), crc=True) + cgm(),
}


@pytest.mark.parametrize("uuid", sorted(FULL_VALUES))
def test_truncated_at_every_length(dec, uuid):
    value = FULL_VALUES[uuid]
    record_boundaries = {value[0]} if uuid == CGM else set()
    for length in set(range(1, len(value))) - record_boundaries:
        assert error_of(dec, uuid, value[:length]) == GattError.TRUNCATED, length


@pytest.mark.parametrize("uuid", [BPM, GLUCOSE, CONTEXT])
def test_trailing_octets_are_ignored(dec, uuid):
    plain = one(dec, uuid, FULL_VALUES[uuid])
    longer = one(dec, uuid, FULL_VALUES[uuid] + b"\x01\x02\x03")
    assert plain["fingerprint"] != longer["fingerprint"]
    longer["fingerprint"] = plain["fingerprint"]
    assert longer.tobytes() == plain.tobytes()


@pytest.mark.parametrize("uuid", sorted(FULL_VALUES))
def test_empty_value(dec, uuid):
    assert error_of(dec, uuid, b"") == GattError.EMPTY


@pytest.mark.parametrize("uuid", [0x0000, 0x2A36, 0x2AA8, 0xFFFF, -1, 0x10000])
def test_unknown_uuid(dec, uuid):
    assert error_of(dec, uuid, b"\x00" * 20) == GattError.UUID


def test_context_values_out_of_range_raise(dec):
    with pytest.raises(OverflowError):
        dec.decode(BPM, bpm(), tz_min=2**15)


# ---- batch -------------------------------------------------------------------------------


def contexts_for(n: int, **fields) -> np.ndarray:
    ctx = np.zeros(n, dtype=GATT_CONTEXT_DTYPE)
    for name, values in fields.items():
        ctx[name] = values
    return ctx


def test_batch_mixes_good_and_failed_values(dec):
    values = [bpm(), b"", cgm() + cgm(), b"\x00", glucose(base_time=date_time(2020, 2, 30)), context(seq=4)]
    uuids = np.array([BPM, GLUCOSE, CGM, 0x1234, GLUCOSE, CONTEXT], dtype=np.uint16)
    buf, offsets = pack_values(values)
    ctx = contexts_for(6, device=np.arange(6) + 10, rx=np.arange(6) * 1000)
    records, value_index, errors = dec.decode_batch(buf, offsets, uuids, ctx)
    assert list(errors) == [GattError.OK, GattError.EMPTY, GattError.OK, GattError.UUID, GattError.DATE, GattError.OK]
    assert list(value_index) == [0, 1, 2, 2, 3, 4, 5]
    assert list(records["reason"]) == [Reason.OK, Reason.DECODE, Reason.OK, Reason.OK, Reason.SCHEMA, Reason.DECODE,
                                       Reason.OK]
    assert list(records["kind"]) == [Kind.BP, Kind.GLU, Kind.CGM, Kind.CGM, Kind.NONE, Kind.GLU, Kind.GLU_CONTEXT]
    assert list(records["device"]) == [10, 11, 12, 12, 13, 14, 15]
    assert list(records["rx"]) == [0, 1000, 2000, 2000, 3000, 4000, 5000]
    failed = records[[1, 4, 5]]
    assert np.isnan(failed["v"]).all()
    assert (failed["flags"] == 0).all() and (failed["aux"] == 0xFF).all() and (failed["patient"] == -1).all()
    assert int(failed[1]["fingerprint"]) == fnv1a(b"\x34\x12\x00")
    assert int(failed[0]["fingerprint"]) == fnv1a(b"\x18\x2a")


def test_batch_equals_single_decodes(dec):
    values = list(FULL_VALUES.values())
    uuids = np.array(list(FULL_VALUES), dtype=np.uint16)
    buf, offsets = pack_values(values)
    ctx = contexts_for(4, tz_min=[-120, 0, 30, 0], cgm_start=[0, 0, 0, 10**12], has_cgm_start=[0, 0, 0, 1])
    records, _, _ = dec.decode_batch(buf, offsets, uuids, ctx)
    singles = [dec.decode(int(u), v, tz_min=int(c["tz_min"]), cgm_start=int(c["cgm_start"]) if c["has_cgm_start"]
                          else None)[0] for u, v, c in zip(uuids, values, ctx)]
    assert records.tobytes() == np.concatenate(singles).tobytes()


def test_batch_of_nothing(dec):
    buf, offsets = pack_values([])
    records, value_index, errors = dec.decode_batch(buf, offsets, np.zeros(0, np.uint16), contexts_for(0))
    assert (len(records), len(value_index), len(errors)) == (0, 0, 0)
    assert records.dtype == READING_DTYPE


@pytest.mark.parametrize(("offsets", "n_ctx", "exc"), [
    ([0, 3], 2, ValueError), ([0, 2, 1], 2, ValueError), ([0, 2, 9], 2, ValueError), ([-1, 2, 3], 2, ValueError),
    ([0, 1, 3], 1, ValueError),
])
def test_batch_rejects_bad_arguments(dec, offsets, n_ctx, exc):
    with pytest.raises(exc):
        dec.decode_batch(b"abc", np.array(offsets, np.int64), np.array([BPM, BPM], np.uint16), contexts_for(n_ctx))


def test_batch_rejects_wrong_context_dtype(dec):
    with pytest.raises(TypeError):
        dec.decode_batch(b"", np.zeros(2, np.int64), np.array([BPM], np.uint16), np.zeros(1, READING_DTYPE))


def test_pack_values():
    buf, offsets = pack_values([b"ab", b"", b"cde"])
    assert buf == b"abcde"
    assert offsets.dtype == np.int64 and list(offsets) == [0, 2, 2, 5]


# ---- differential: compiled vs twin ------------------------------------------------------

uuids = st.sampled_from(gv.KNOWN_UUIDS) | st.integers(0, 0xFFFF)
contexts = st.fixed_dictionaries({
    "device": st.integers(-(2**31), 2**31 - 1),
    "rx": st.integers(-(2**63), 2**63 - 1),
    "tz_min": st.integers(-(2**15), 2**15 - 1),
    "cgm_start": st.none() | st.integers(-(2**63), 2**63 - 1) | st.integers(0, 2**41),
})


@st.composite
def valid_values(draw):
    uuid = draw(st.sampled_from(gv.KNOWN_UUIDS))
    return uuid, gv.random_value(uuid, lambda lo, hi: draw(st.integers(lo, hi)))


@st.composite
def mutated_values(draw):
    uuid, value = draw(valid_values())
    return uuid, gv.mutate(value, lambda lo, hi: draw(st.integers(lo, hi)))


any_values = st.tuples(uuids, st.binary(max_size=64)) | valid_values() | mutated_values()


def assert_same_single(uuid: int, value: bytes, ctx: dict) -> GattError:
    c_records, c_error = compiled_gatt.decode(uuid, value, **ctx)
    py_records, py_error = reference_gatt.decode(uuid, value, **ctx)
    assert c_error == py_error
    assert c_records.dtype == py_records.dtype == READING_DTYPE
    assert c_records.tobytes() == py_records.tobytes()
    return c_error


@differential
@given(uuid=uuids, value=st.binary(max_size=64), ctx=contexts)
def test_differential_random_bytes(uuid, value, ctx):
    assert_same_single(uuid, value, ctx)


@differential
@given(uuid_value=valid_values(), ctx=contexts)
def test_differential_valid_values(uuid_value, ctx):
    error = assert_same_single(*uuid_value, ctx)
    assert error in (GattError.OK, GattError.DATE)


@differential
@given(uuid_value=mutated_values(), ctx=contexts)
def test_differential_mutated_values(uuid_value, ctx):
    assert_same_single(*uuid_value, ctx)


@differential
@given(items=st.lists(st.tuples(any_values, contexts), max_size=12))
def test_differential_batch(items):
    values = [value for (_, value), _ in items]
    uuid_array = np.array([uuid for (uuid, _), _ in items], dtype=np.uint16)
    ctx = contexts_for(len(items))
    for i, (_, c) in enumerate(items):
        ctx[i]["device"], ctx[i]["rx"], ctx[i]["tz_min"] = c["device"], c["rx"], c["tz_min"]
        if c["cgm_start"] is not None:
            ctx[i]["cgm_start"], ctx[i]["has_cgm_start"] = c["cgm_start"], 1
    buf, offsets = pack_values(values)
    c_out = compiled_gatt.decode_batch(buf, offsets, uuid_array, ctx)
    py_out = reference_gatt.decode_batch(buf, offsets, uuid_array, ctx)
    for c_part, py_part in zip(c_out, py_out):
        assert c_part.dtype == py_part.dtype
        assert c_part.tobytes() == py_part.tobytes()
    assert len(c_out[2]) == len(items)
    assert set(c_out[1]) == set(range(len(items)))
