"""Reading maps (pmp/v1/dev/{id}/m) -> rows: every reason path, units, flags, both formats."""

import json
import math

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import core
from adapters import gatt_encode as enc
from adapters.codec import KPA_TO_MMHG, MEALS, MG_PER_DL_PER_MMOL_PER_L, READING_TYPES, ROW_FIELDS, reading_row
from adapters.devices import DeviceIndex
from adapters.inbound import Inbound, decode_messages
from adapters.wire import Rejected
from core.codes import NO_USER, Flag, Kind, Reason, Unit
from core.reference.fingerprint import fnv1a64
from tests.conftest import differential

T = 1_764_071_940_000  # 2025-11-25T11:59:00Z
RX = T + 60_000
TOPIC = "pmp/v1/dev/tono-1/m"
BP = {"seq": 7, "t": T, "type": "bp", "sys": 128, "dia": 82, "pul": 71}
GLU = {"seq": 8, "t": T, "type": "glu", "glu": 5.4}
CGM = {"t": T, "type": "cgm", "glu": 6.1, "trend": -0.05}


def decode(*payloads, topic=TOPIC):
    return decode_messages([Inbound(topic, payload, RX) for payload in payloads], DeviceIndex())


def one(reading, *, packer=msgpack.packb):
    decoded = decode(packer(reading))
    assert len(decoded) == 1
    return decoded, decoded.batch[0]


def test_blood_pressure_row():
    decoded, row = one({**BP, "map": 97, "st": 0, "user": 2, "bat": 55})
    assert row["reason"] == Reason.OK and row["kind"] == Kind.BP
    assert row["t"] == T and row["rx"] == RX and row["seq"] == 7 and row["user"] == 2
    assert row["v"].tolist() == [128.0, 82.0, 97.0, 71.0]
    assert row["flags"] == Flag.HAS_TIME | Flag.HAS_SEQ and row["unit_in"] == Unit.MMHG
    assert row["device"] == 0 and row["patient"] == -1
    assert decoded.battery[0] == 55 and decoded.meal[0] == 0 and decoded.hseq[0] == -1
    assert decoded.message[0] == 0 and decoded.element[0] == 0 and decoded.details == {}


def test_optional_fields_default():
    _, row = one({"t": T, "type": "bp", "sys": 128.5, "dia": 82})
    assert row["flags"] == Flag.HAS_TIME and row["seq"] == 0 and row["user"] == NO_USER and row["status"] == 0
    assert row["v"][0] == 128.5 and math.isnan(row["v"][2]) and math.isnan(row["v"][3])


def test_glucose_and_cgm_rows():
    decoded = decode(msgpack.packb([{**GLU, "meal": "post", "src": "venous"}, CGM]))
    glu, cgm = decoded.batch
    assert glu["kind"] == Kind.GLU and glu["v"][0] == 5.4 and glu["unit_in"] == Unit.MMOL_PER_L
    assert glu["aux"][0] == 3 and decoded.meal.tolist() == [MEALS["post"], 0]
    assert cgm["kind"] == Kind.CGM and cgm["v"][:2].tolist() == [6.1, -0.05] and math.isnan(cgm["v"][2])
    assert cgm["flags"] == Flag.HAS_TIME and cgm["aux"][0] == 0xFF


@pytest.mark.parametrize("glu, flag", [("LO", Flag.RANGE_LO), ("HI", Flag.RANGE_HI)])
@pytest.mark.parametrize("kind", ["glu", "cgm"])
def test_censored_glucose(glu, flag, kind):
    _, row = one({"t": T, "type": kind, "glu": glu})
    assert row["reason"] == Reason.OK and row["flags"] & flag and math.isnan(row["v"][0])


@pytest.mark.parametrize("status, artifact", [(0x01, True), (0x02, True), (0x20, True), (0x04, False),
                                              (0x08, False), (0x10, False), (0xFFDC, False), (0xFFFF, True)])
def test_artifact_status_bits(status, artifact):
    _, row = one({**BP, "st": status})
    assert row["status"] == status and bool(row["flags"] & Flag.ARTIFACT) is artifact


def test_control_solution():
    _, row = one({**GLU, "src": "control"})
    assert row["flags"] & Flag.CONTROL and row["aux"][0] == 10


def test_kpa_equals_the_gatt_path():
    reading = {"t": T, "type": "bp", "sys": 17.3, "dia": 11.1, "map": 13.2, "pul": 64, "u": "kPa"}
    _, row = one(reading)
    value = enc.blood_pressure(enc.sfloat(17.3, -1), enc.sfloat(11.1, -1), enc.sfloat(13.2, -1), kpa=True,
                               pulse_raw=enc.sfloat(64))
    (record,), _ = core.gatt_decode(0x2A35, value)
    assert row["unit_in"] == record["unit_in"] == Unit.KPA
    assert row["v"].tobytes() == record["v"].tobytes()
    assert row["v"][0] == 17.3 * KPA_TO_MMHG


def test_mg_per_dl_equals_the_gatt_path():
    _, row = one({"t": T, "type": "cgm", "glu": 99, "trend": -1.5, "u": "mg/dL"})
    value = enc.cgm_record(enc.sfloat(99), 0, trend_raw=enc.sfloat(-1.5, -1))
    (record,), _ = core.gatt_decode(0x2AA7, value)
    assert row["unit_in"] == record["unit_in"] == Unit.MG_PER_DL
    assert row["v"][:2].tobytes() == record["v"][:2].tobytes()
    assert row["v"][0] == 99 / MG_PER_DL_PER_MMOL_PER_L


def test_mg_per_dl_glucose_matches_the_glucose_measurement():
    """0x2A18 sends kg/L (mg/dL = kg/L * 100000): the same number up to the kg/L rounding."""
    _, row = one({"t": T, "type": "glu", "glu": 99, "u": "mg/dL"})
    value = enc.glucose(1, __import__("datetime").datetime(2025, 11, 25), concentration_raw=enc.sfloat(99e-5, -5))
    (record,), _ = core.gatt_decode(0x2A18, value)
    assert row["v"][0] == pytest.approx(record["v"][0], rel=1e-15)


# map -> (reason, words of the detail). Every row below is a rejected element.
SCHEMA_CASES = [
    ([1, 2], "reading is not a map"),
    ("bp", "reading is not a map"),
    ({"t": T, "sys": 120, "dia": 80}, "missing key: 'type'"),
    ({**BP, "type": "BP"}, "type must be one of"),
    ({**BP, "type": 1}, "type must be one of"),
    ({**BP, "type": None}, "type must be one of"),
    ({**BP, "x": 1}, "unknown key for type bp: 'x'"),
    ({**BP, "glu": 5.0}, "unknown key for type bp: 'glu'"),
    ({**BP, "meal": "pre"}, "unknown key for type bp: 'meal'"),
    ({**GLU, "trend": 0.1}, "unknown key for type glu: 'trend'"),
    ({**CGM, "src": "capillary"}, "unknown key for type cgm: 'src'"),
    ({"type": "bp", "sys": 120, "dia": 80}, "missing key: 't'"),
    ({"t": T, "type": "bp", "sys": 120}, "missing key: 'dia'"),
    ({"t": T, "type": "glu"}, "missing key: 'glu'"),
    ({**BP, "t": float(T)}, "t must be an integer"),
    ({**BP, "t": True}, "t must be an integer"),
    ({**BP, "t": str(T)}, "t must be an integer"),
    ({**BP, "seq": -1}, "seq must be an integer in [0, 4294967295]: -1"),
    ({**BP, "seq": 2**32}, "seq must be an integer"),
    ({**BP, "seq": 1.0}, "seq must be an integer"),
    ({**BP, "seq": None}, "seq must be an integer"),
    ({**BP, "st": 0x10000}, "st must be an integer in [0, 65535]"),
    ({**BP, "st": -1}, "st must be an integer"),
    ({**BP, "user": 256}, "user must be an integer in [0, 255]"),
    ({**BP, "user": False}, "user must be an integer"),
    ({**BP, "sys": True}, "sys must be a number: True"),
    ({**BP, "dia": "82"}, "dia must be a number"),
    ({**BP, "pul": None}, "pul must be a number"),
    ({**BP, "map": [1]}, "map must be a number"),
    ({**BP, "bat": False}, "bat must be a number"),
    ({**GLU, "glu": "lo"}, "glu must be a number or one of ['HI', 'LO']"),
    ({**GLU, "glu": True}, "glu must be a number"),
    ({**CGM, "trend": "up"}, "trend must be a number"),
    ({**BP, "u": "mmhg"}, "u must be one of ['kPa', 'mmHg'] for type bp"),
    ({**GLU, "u": "kPa"}, "u must be one of ['mg/dL', 'mmol/L'] for type glu"),
    ({**GLU, "u": None}, "u must be one of"),
    ({**GLU, "meal": "lunch"}, "meal must be one of"),
    ({**GLU, "meal": 1}, "meal must be one of"),
    ({**GLU, "src": "arterial"}, "src must be one of"),
]


@pytest.mark.parametrize("packer", [msgpack.packb, lambda x: json.dumps(x).encode()], ids=["msgpack", "json"])
@pytest.mark.parametrize("reading, words", SCHEMA_CASES)
def test_schema_rejections(reading, words, packer):
    payload = packer([BP, reading])
    decoded = decode(payload)
    assert decoded.batch["reason"].tolist() == [Reason.OK, Reason.SCHEMA]
    assert words in decoded.details[(0, 1)] and decoded.details[(0, 1)].startswith("SCHEMA: ")
    row = decoded.batch[1]
    kind = reading.get("type") if isinstance(reading, dict) else None
    assert row["kind"] == (READING_TYPES[kind].kind if kind in READING_TYPES else Kind.NONE)
    assert np.isnan(row["v"]).all() and row["device"] == 0 and row["rx"] == RX
    assert row["fingerprint"] == fnv1a64(packer(reading) if packer is msgpack.packb else json.dumps(reading).encode())


def test_duplicate_keys_are_schema_in_both_formats():
    msgpack_payload = b"\x92" + msgpack.packb(BP) + b"\x83\xa1t\x01\xa4type\xa2bp\xa1t\x02"
    json_payload = b'[%s, {"t": 1, "type": "bp", "t": 2}]' % json.dumps(BP).encode()
    for payload in (msgpack_payload, json_payload):
        decoded = decode(payload)
        assert decoded.batch["reason"].tolist() == [Reason.OK, Reason.SCHEMA]
        assert decoded.details[(0, 1)] == "SCHEMA: duplicate key: 't'"


def test_json_nan_literal_is_schema():
    decoded = decode(b'[{"t": %d, "type": "bp", "sys": NaN, "dia": 80}, {"t": %d, "type": "cgm", "glu": 5, '
                     b'"trend": -Infinity}]' % (T, T))
    assert decoded.batch["reason"].tolist() == [Reason.SCHEMA, Reason.SCHEMA]
    assert decoded.details[(0, 0)] == "SCHEMA: sys must be a number: JSON literal NaN"


def test_json_integer_too_large_for_a_float():
    decoded = decode(b'{"t": %d, "type": "bp", "sys": 1%s, "dia": 80}' % (T, b"0" * 400))
    assert decoded.batch["reason"].tolist() == [Reason.SCHEMA]
    assert "number too large" in decoded.details[(0, 0)]


def test_json_integer_beyond_int64_is_schema():
    decoded = decode(json.dumps({**BP, "t": 2**63}).encode())
    assert decoded.batch["reason"].tolist() == [Reason.SCHEMA]


def test_integer_limits_are_accepted():
    _, row = one({**BP, "seq": 2**32 - 1, "st": 0xFFFF, "user": 255, "t": 2**63 - 1})
    assert row["reason"] == Reason.OK and row["seq"] == 2**32 - 1 and row["t"] == 2**63 - 1


@pytest.mark.parametrize("key", ["map", "pul"])
def test_nan_in_an_optional_pressure_value_is_notnum(key):
    decoded, row = one({**BP, key: math.nan})
    assert row["reason"] == Reason.NOTNUM and decoded.details[(0, 0)].startswith("NaN")
    assert row["v"][0] == 128.0  # the values stay for the quarantine


def test_nan_trend_and_battery_are_notnum():
    assert one({**CGM, "trend": math.nan})[1]["reason"] == Reason.NOTNUM
    assert one({**BP, "bat": math.nan})[1]["reason"] == Reason.NOTNUM
    assert one({**BP, "bat": math.inf})[1]["reason"] == Reason.NOTNUM


@pytest.mark.parametrize("reading", [{**BP, "sys": math.nan}, {**BP, "dia": -math.inf}, {**BP, "pul": math.inf},
                                     {**GLU, "glu": math.nan}, {**CGM, "trend": math.inf}])
def test_non_numbers_in_values_are_left_to_the_core(reading):
    decoded, row = one(reading)
    assert row["reason"] == Reason.OK
    batch = decoded.batch.copy()
    core.validate(batch["kind"], batch["flags"], batch["t"], batch["rx"], batch["v"], batch["reason"], RX)
    assert batch["reason"][0] == Reason.NOTNUM


def test_censored_glucose_passes_core_validation():
    decoded, _ = one({**GLU, "glu": "LO"})
    batch = decoded.batch.copy()
    core.validate(batch["kind"], batch["flags"], batch["t"], batch["rx"], batch["v"], batch["reason"], RX)
    assert batch["reason"][0] == Reason.OK


def test_fingerprint_is_the_cores():
    decoded, _ = one(BP)
    batch = decoded.batch
    expected = np.zeros(1, dtype=np.uint64)
    core.reference.fingerprint_readings(batch["kind"], batch["flags"], batch["user"], batch["t"], batch["v"],
                                        expected)
    assert batch["fingerprint"][0] == expected[0]


def test_reading_row_fields():
    row = reading_row(tuple(BP.items()))
    assert dict(zip(ROW_FIELDS, row))["v0"] == 128.0 and len(row) == len(ROW_FIELDS)
    with pytest.raises(Rejected, match="missing key: 'sys'") as caught:
        reading_row((("t", T), ("type", "bp")))
    assert caught.value.reason is Reason.SCHEMA and caught.value.value == "sys"


finite = st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False))
maybe = st.one_of(finite, st.booleans(), st.none(), st.text(max_size=3), st.sampled_from(["LO", "HI", "kPa"]))
readings = st.fixed_dictionaries(
    {"t": st.one_of(st.integers(-(2**63), 2**63 - 1), maybe), "type": st.sampled_from(["bp", "glu", "cgm", "x"])},
    optional={"seq": st.one_of(st.integers(-1, 2**32), maybe), "sys": finite, "dia": maybe, "map": finite,
              "pul": finite, "glu": maybe, "trend": finite, "bat": finite, "st": st.integers(0, 0xFFFF),
              "user": st.integers(0, 256), "u": st.sampled_from(["mmHg", "kPa", "mmol/L", "mg/dL", "x"]),
              "meal": st.sampled_from([*MEALS, "x"]), "src": st.sampled_from(["capillary", "venous", "control"]),
              "zz": finite},
)


@differential
@given(st.lists(readings, min_size=1, max_size=8))
def test_json_and_msgpack_give_the_same_rows(maps):
    from_msgpack = decode(msgpack.packb(maps))
    from_json = decode(json.dumps(maps).encode())
    a, b = from_msgpack.batch.copy(), from_json.batch.copy()
    rejected = (a["reason"] != Reason.OK) & (a["reason"] != Reason.NOTNUM)
    a["fingerprint"][rejected] = b["fingerprint"][rejected] = 0  # raw octets differ between formats
    assert a.tobytes() == b.tobytes()
    for column in ("message", "element", "battery", "meal", "hseq"):
        assert getattr(from_msgpack, column).tobytes() == getattr(from_json, column).tobytes()
    assert from_msgpack.details == from_json.details
