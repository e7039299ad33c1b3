"""GATT record maps (pmp/v1/hub/{id}/gatt) -> records: schema, one decoder call, context join, hseq."""

import datetime

import msgpack
import numpy as np
import pytest

import core
from adapters import gatt as gatt_adapter
from adapters import gatt_encode as enc
from adapters.codec import MEALS
from adapters.devices import DeviceIndex
from adapters.inbound import Inbound, decode_messages
from core.codes import Flag, Kind, Reason
from core.reference.fingerprint import fnv1a64

WHEN = datetime.datetime(2025, 11, 25, 9, 30)
WHEN_MS = int(WHEN.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
RX = WHEN_MS + 3_600_000
HUB_RX = RX - 5_000
TOPIC = "pmp/v1/hub/hub-1/gatt"
METER = "AA:BB:CC:DD:EE:01"
BPM = enc.blood_pressure(enc.sfloat(128), enc.sfloat(82), enc.sfloat(97), when=WHEN, pulse_raw=enc.sfloat(70))


def record(uuid=0x2A35, val=BPM, **extra):
    return {"dev": METER, "uuid": uuid, "val": val, "rx": HUB_RX, "tz": 180, **extra}


def decode(*payloads, devices=None, topic=TOPIC):
    return decode_messages([Inbound(topic, payload, RX) for payload in payloads], DeviceIndex() if devices is None else devices)


def test_blood_pressure_record():
    devices = DeviceIndex()
    decoded = decode(msgpack.packb(record(hseq=41)), devices=devices)
    (row,) = decoded.batch
    assert row["reason"] == Reason.OK and row["kind"] == Kind.BP
    assert row["v"].tolist() == [128.0, 82.0, 97.0, 70.0]
    assert row["t"] == WHEN_MS - 180 * 60_000 and row["rx"] == HUB_RX
    assert devices.ids() == ["hub-1", METER] and row["device"] == 1
    assert decoded.hseq.tolist() == [41] and decoded.message.tolist() == [0] and decoded.element.tolist() == [0]
    assert np.isnan(decoded.battery[0]) and decoded.details == {}
    (expected,), _ = core.gatt_decode(0x2A35, BPM, device=1, rx=HUB_RX, tz_min=180)
    assert row.tobytes() == expected.tobytes()


def test_all_values_of_a_batch_are_decoded_in_one_call(monkeypatch):
    calls = []
    real = core.gatt_decode_batch

    def counting(*args):
        calls.append(len(args[2]))
        return real(*args)

    monkeypatch.setattr(core, "gatt_decode_batch", counting)
    decoded = decode(msgpack.packb([record(), record()]), msgpack.packb(record()),
                     msgpack.packb([{"t": 1}]), topic=TOPIC)
    assert calls == [3] and len(decoded) == 4


def test_cgm_value_with_several_records_gives_a_row_each():
    value = enc.cgm_record(enc.sfloat(110), 5) + enc.cgm_record(enc.sfloat(112), 10, crc=True)
    decoded = decode(msgpack.packb([record(), record(0x2AA7, value, cgm_start=WHEN_MS, hseq=9)]))
    assert decoded.batch["kind"].tolist() == [Kind.BP, Kind.CGM, Kind.CGM]
    assert decoded.element.tolist() == [0, 1, 1] and decoded.hseq.tolist() == [-1, 9, 9]
    assert decoded.batch["t"][1:].tolist() == [WHEN_MS + 5 * 60_000, WHEN_MS + 10 * 60_000]


def test_undecodable_value_is_one_decode_row_with_the_decoders_detail():
    decoded = decode(msgpack.packb([record(val=BPM[:5]), record(0x2A35, b""), record(0x2A99, b"\x00")]))
    assert decoded.batch["reason"].tolist() == [Reason.DECODE, Reason.DECODE, Reason.SCHEMA]
    assert decoded.batch["kind"].tolist() == [Kind.BP, Kind.BP, Kind.NONE]
    assert decoded.details == {(0, 0): "value ends before a field its flags announce", (0, 1): "empty value",
                               (0, 2): "characteristic not decoded by this gateway"}


# record -> (reason, words of the detail)
RECORD_CASES = [
    ([1], Reason.SCHEMA, "GATT record is not a map"),
    ({**record(), "x": 1}, Reason.SCHEMA, "unknown key in GATT record: 'x'"),
    ({k: v for k, v in record().items() if k != "tz"}, Reason.SCHEMA, "missing key in GATT record: 'tz'"),
    (record(dev="aa:bb:cc:dd:ee:01"), Reason.TOPIC, "dev must be a BLE address"),
    (record(dev="hub-2"), Reason.TOPIC, "dev must be a BLE address"),
    (record(dev=1), Reason.TOPIC, "dev must be a BLE address"),
    (record(val="1e8c"), Reason.SCHEMA, "val must be bin"),
    (record(uuid=0x10000), Reason.SCHEMA, "uuid must be an integer in [0, 65535]"),
    (record(uuid=True), Reason.SCHEMA, "uuid must be an integer"),
    (record(rx=-1), Reason.SCHEMA, "rx must be an integer in [0, "),
    (record(rx=1.5), Reason.SCHEMA, "rx must be an integer"),
    (record(tz=2**15), Reason.SCHEMA, "tz must be an integer in [-32768, 32767]"),
    (record(cgm_start=None), Reason.SCHEMA, "cgm_start must be an integer"),
    (record(cgm_start=2**63), Reason.SCHEMA, "cgm_start must be an integer"),
    (record(hseq=-1), Reason.SCHEMA, "hseq must be an integer in [0, 4294967295]"),
    (record(hseq=2**32), Reason.SCHEMA, "hseq must be an integer"),
]


@pytest.mark.parametrize("bad, reason, words", RECORD_CASES)
def test_record_rejections(bad, reason, words):
    devices = DeviceIndex()
    payload = msgpack.packb([record(hseq=5), bad])
    decoded = decode(payload, devices=devices)
    assert decoded.batch["reason"].tolist() == [Reason.OK, reason]
    assert words in decoded.details[(0, 1)]
    row = decoded.batch[1]
    assert row["rx"] == RX and np.isnan(row["v"]).all()
    assert row["fingerprint"] == fnv1a64(msgpack.packb(bad))
    valid_dev = isinstance(bad, dict) and bad.get("dev") == METER
    assert devices.ids()[row["device"]] == (METER if valid_dev else "hub-1")
    assert row["kind"] == (Kind.BP if isinstance(bad, dict) and bad.get("uuid") == 0x2A35 else Kind.NONE)


def test_rejected_record_keeps_a_valid_hseq_for_the_hubs_ack():
    decoded = decode(msgpack.packb([record(hseq=5, tz=1.0), record(hseq=-3, x=1)]))
    assert decoded.batch["reason"].tolist() == [Reason.SCHEMA, Reason.SCHEMA] and decoded.hseq.tolist() == [5, -1]


def test_duplicate_key_in_a_record():
    packed = msgpack.packb(record())
    payload = bytes([packed[0] + 1]) + packed[1:] + b"\xa2tz\x00"  # fixmap count + 1, tz again
    decoded = decode(payload)
    assert decoded.batch["reason"].tolist() == [Reason.SCHEMA] and "duplicate key: 'tz'" in decoded.details[(0, 0)]
    assert decoded.batch["fingerprint"][0] == fnv1a64(payload)


@pytest.mark.parametrize("payload", [b"\xc1", b'[{"dev": "AA:BB:CC:DD:EE:01"}]', b"\x90", msgpack.packb(5)])
def test_whole_payload_failures(payload):
    decoded = decode(payload)
    assert len(decoded) == 1 and decoded.batch["reason"][0] in (Reason.DECODE, Reason.SCHEMA)
    assert decoded.batch["device"][0] == 0 and decoded.batch["fingerprint"][0] == fnv1a64(payload)


def test_json_is_not_accepted_on_the_gatt_topic():
    decoded = decode(b'{"dev": "AA:BB:CC:DD:EE:01", "uuid": 10805, "val": "", "rx": 1, "tz": 0}')
    assert decoded.batch["reason"].tolist() == [Reason.DECODE]


def glucose(seq, when=WHEN, meter=METER, **kw):
    return record(0x2A18, enc.glucose(seq, when, concentration_raw=enc.sfloat(99e-5, -5), context_follows=True,
                                      **kw), dev=meter)


def context(seq, meal, meter=METER):
    return record(0x2A34, enc.glucose_context(seq, meal=meal), dev=meter)


def test_context_takes_the_measurement_time_and_gives_its_meal():
    other = "AA:BB:CC:DD:EE:02"
    decoded = decode(msgpack.packb([glucose(3), context(3, 2), context(4, 1), glucose(3, meter=other)]),
                     msgpack.packb(context(3, 5, meter=other)))
    kind = decoded.batch["kind"].tolist()
    assert kind == [Kind.GLU, Kind.GLU_CONTEXT, Kind.GLU_CONTEXT, Kind.GLU, Kind.GLU_CONTEXT]
    t, flags = decoded.batch["t"], decoded.batch["flags"]
    measured = WHEN_MS - 180 * 60_000
    assert t[1] == measured and flags[1] & Flag.HAS_TIME
    assert not flags[2] & Flag.HAS_TIME  # no measurement 4 in the batch: validation gives it rx
    assert t[4] == measured and flags[4] & Flag.HAS_TIME  # joined across messages of one batch
    assert decoded.meal.tolist() == [MEALS["post"], MEALS["post"], MEALS["pre"], MEALS["bedtime"], MEALS["bedtime"]]


def test_context_of_a_measurement_without_time_stays_without_time():
    decoded = decode(msgpack.packb([glucose(3, when=datetime.datetime.min.replace(year=1)), context(3, 3)]))
    assert decoded.batch["reason"].tolist() == [Reason.DECODE, Reason.OK]  # year 1 is impossible: DECODE
    assert not decoded.batch["flags"][1] & Flag.HAS_TIME and decoded.meal.tolist() == [0, MEALS["fasting"]]


def test_reserved_meal_code_is_absent():
    decoded = decode(msgpack.packb([glucose(3), context(3, 6)]))
    assert decoded.meal.tolist() == [0, 0] and decoded.batch["flags"][1] & Flag.HAS_TIME


def test_measurement_repeated_in_a_batch_gets_the_meal_each_time():
    decoded = decode(msgpack.packb([glucose(3), context(3, 4)]), msgpack.packb([glucose(3), context(3, 4)]))
    assert decoded.meal.tolist() == [MEALS["casual"]] * 4


def test_join_contexts_directly():
    records = core.empty_batch(3)
    records["kind"] = [Kind.GLU, Kind.GLU_CONTEXT, Kind.GLU_CONTEXT]
    records["device"], records["seq"] = [1, 1, 2], [7, 7, 7]
    records["t"], records["flags"] = [123, 0, 0], [Flag.HAS_TIME, 0, 0]
    records["aux"][1:, 1] = 1
    meal = np.zeros(3, dtype=np.uint8)
    gatt_adapter.join_contexts(records, meal)
    assert records["t"].tolist() == [123, 123, 0] and meal.tolist() == [1, 1, 1]
