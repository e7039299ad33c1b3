"""decode_messages: one row per element whatever arrives, row order, topics, and the core downstream."""

import datetime
import json

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import core
from adapters import gatt_encode as enc
from adapters.devices import DeviceIndex
from adapters.inbound import NO_DEVICE, Decoded, Inbound, decode_messages
from adapters.wire import MAX_ELEMENTS, MAX_PAYLOAD_OCTETS
from core.bindings import OPEN_END, Bindings
from core.codes import NO_USER, Kind, Reason
from core.pipeline import Pipeline
from core.reference.fingerprint import fnv1a64
from tests.conftest import differential

NOW = 1_764_072_000_000
T = NOW - 60_000
BP = {"seq": 1, "t": T, "type": "bp", "sys": 128, "dia": 82, "pul": 71}
GLU = {"seq": 2, "t": T, "type": "glu", "glu": 5.4, "meal": "pre"}
WHEN = datetime.datetime(2025, 11, 25, 9, 0)
GATT = {"dev": "AA:BB:CC:DD:EE:01", "uuid": 0x2A35, "rx": NOW - 1000, "tz": 0, "hseq": 3,
        "val": enc.blood_pressure(enc.sfloat(128), enc.sfloat(82), enc.sfloat(97), when=WHEN)}
CGM_VALUE = enc.cgm_record(enc.sfloat(110), 5) + enc.cgm_record(enc.sfloat(112), 10, crc=True)
GATT_CGM = {**GATT, "uuid": 0x2AA7, "val": CGM_VALUE, "cgm_start": T}
DEV, HUB = "pmp/v1/dev/d1/m", "pmp/v1/hub/h1/gatt"
ADAPTER_REASONS = {Reason.OK, Reason.NOTNUM, Reason.DECODE, Reason.SCHEMA, Reason.TOPIC}


def test_rows_follow_messages_and_elements():
    devices = DeviceIndex()
    messages = [Inbound(HUB, msgpack.packb([GATT, {"x": 1}, GATT_CGM]), NOW),
                Inbound(DEV, msgpack.packb([BP, GLU]), NOW),
                Inbound("pmp/v1/dev/d1/x", b"\x80", NOW),
                Inbound("pmp/v1/dev/d2/m", json.dumps(BP).encode(), NOW + 1)]
    decoded = decode_messages(messages, devices)
    assert decoded.message.tolist() == [0, 0, 0, 0, 1, 1, 2, 3]
    assert decoded.element.tolist() == [0, 1, 2, 2, 0, 1, 0, 0]
    assert decoded.batch["reason"].tolist() == [Reason.OK, Reason.SCHEMA, Reason.OK, Reason.OK, Reason.OK,
                                                Reason.OK, Reason.TOPIC, Reason.OK]
    assert decoded.hseq.tolist() == [3, -1, 3, 3, -1, -1, -1, -1]
    assert devices.ids() == ["h1", "d1", "d2", "AA:BB:CC:DD:EE:01"]
    assert decoded.batch["device"].tolist() == [3, 0, 3, 3, 1, 1, NO_DEVICE, 2]
    assert decoded.batch["rx"].tolist()[4:] == [NOW, NOW, NOW, NOW + 1]
    assert set(decoded.details) == {(0, 1), (2, 0)} and len(decoded) == 8


def test_bad_topic_is_one_topic_row_without_a_device():
    devices = DeviceIndex()
    payload = msgpack.packb([BP, BP])
    decoded = decode_messages([Inbound("pmp/v1/dev/a:b/m", payload, NOW)], devices)
    (row,) = decoded.batch
    assert row["reason"] == Reason.TOPIC and row["device"] == NO_DEVICE and row["kind"] == Kind.NONE
    assert row["fingerprint"] == fnv1a64(payload) and len(devices) == 0
    assert decoded.details == {(0, 0): "TOPIC: not an inbound topic: 'pmp/v1/dev/a:b/m'"}


@pytest.mark.parametrize("kind, route_ok", [("bp", (True, False)), ("glu", (True, False)), ("cgm", (True, False)),
                                            ("hub", (False, True)), ("unknown", (True, True)), (None, (True, True))])
def test_a_registered_kind_publishes_only_on_its_route(kind, route_ok):
    """A tonometer on the hub route (its records could name any BLE meter), a hub on the
    readings route: TOPIC for the whole message, under the publisher."""
    devices = DeviceIndex({"x1": 0})
    kinds = {} if kind is None else {"x1": kind}
    messages = [Inbound("pmp/v1/dev/x1/m", msgpack.packb([BP, GLU]), NOW),
                Inbound("pmp/v1/hub/x1/gatt", msgpack.packb([GATT]), NOW)]
    decoded = decode_messages(messages, devices, kinds=kinds)
    for message, ok in enumerate(route_ok):
        reasons = decoded.batch["reason"][decoded.message == message]
        if ok:
            assert Reason.TOPIC not in reasons
        else:
            assert list(reasons) == [Reason.TOPIC] and decoded.batch["device"][decoded.message == message][0] == 0
            assert f"x1 is registered as {kind}" in decoded.details[(message, 0)]


def test_payload_types():
    payload = msgpack.packb(BP)
    decoded = decode_messages([Inbound(DEV, bytearray(payload), NOW), Inbound(DEV, memoryview(payload), NOW),
                               Inbound(DEV, "text", NOW), Inbound(DEV, None, NOW)], DeviceIndex())
    assert decoded.batch["reason"].tolist() == [Reason.OK, Reason.OK, Reason.DECODE, Reason.DECODE]
    assert decoded.details[(2, 0)] == "DECODE: payload is not bytes"


def test_no_messages():
    decoded = decode_messages([], DeviceIndex())
    assert len(decoded) == 0 and decoded.batch.dtype == core.READING_DTYPE


@pytest.mark.parametrize("pack", [msgpack.packb, lambda x: json.dumps(x).encode()], ids=["msgpack", "json"])
def test_arrays_at_and_over_the_limit(pack):
    at_limit = [{**BP, "seq": i} for i in range(MAX_ELEMENTS)]
    decoded = decode_messages([Inbound(DEV, pack(at_limit), NOW), Inbound(DEV, pack(at_limit + [BP]), NOW)],
                              DeviceIndex())
    assert len(decoded) == MAX_ELEMENTS + 1
    assert (decoded.batch["reason"][:MAX_ELEMENTS] == Reason.OK).all()
    assert decoded.batch["seq"][:MAX_ELEMENTS].tolist() == list(range(MAX_ELEMENTS))
    assert decoded.element[:MAX_ELEMENTS].tolist() == list(range(MAX_ELEMENTS))
    assert decoded.batch["reason"][-1] == Reason.DECODE and decoded.element[-1] == 0


def test_payload_at_and_over_the_size_limit():
    payload = json.dumps([BP]).encode()
    exact = payload + b" " * (MAX_PAYLOAD_OCTETS - len(payload))  # JSON allows trailing white space
    decoded = decode_messages([Inbound(DEV, exact, NOW), Inbound(DEV, exact + b" ", NOW)], DeviceIndex())
    assert decoded.batch["reason"].tolist() == [Reason.OK, Reason.DECODE]
    assert decoded.details == {(1, 0): "DECODE: payload over 262144 octets: 262145"}


def test_decoded_batch_runs_through_the_core_pipeline():
    devices = DeviceIndex(["d1"])
    bindings = Bindings.from_tuples([(0, NO_USER, 0, OPEN_END, 0)], n_devices=1)
    pipeline = Pipeline(core.compiled, n_patients=1, tz_min=np.zeros(1, dtype=np.int16), bindings=bindings)
    crisis = {**BP, "seq": 9, "sys": 185}
    messages = [Inbound(DEV, msgpack.packb([BP, crisis, BP, {**BP, "pul": float("nan")}]), NOW),
                Inbound(HUB, msgpack.packb(GATT), NOW), Inbound("x", b"", NOW)]
    decoded = decode_messages(messages, devices)
    alerts = pipeline.process(decoded.batch, NOW)
    assert decoded.batch["reason"].tolist() == [Reason.OK, Reason.OK, Reason.DUPLICATE, Reason.NOTNUM,
                                                Reason.UNBOUND, Reason.TOPIC]
    assert alerts["reading"].tolist() == [1]


# ---- nothing raises, whatever arrives ----------------------------------------------------------------

TOPICS = st.sampled_from([DEV, HUB, "pmp/v1/dev/d2/m", "pmp/v1/hub/h2/gatt", "pmp/v1/dev/a b/m", "x", ""])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=6),
                    st.sampled_from(["bp", "glu", "cgm", "LO", "HI", "kPa", "mg/dL", "AA:BB:CC:DD:EE:01", "pre"]))
KEYS = st.sampled_from(["t", "type", "sys", "dia", "map", "pul", "glu", "seq", "u", "st", "user", "bat", "trend",
                        "meal", "src", "dev", "uuid", "val", "rx", "tz", "cgm_start", "hseq", "x"])
objects = st.recursive(scalars | st.binary(max_size=24),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=8),
                       max_leaves=24)
json_objects = st.recursive(scalars.filter(lambda x: x == x), lambda inner: st.lists(inner, max_size=4)
                            | st.dictionaries(KEYS, inner, max_size=8), max_leaves=24)
VALID = [msgpack.packb([BP, GLU]), json.dumps([BP, GLU]).encode(), msgpack.packb(BP), msgpack.packb([GATT, GATT_CGM]),
         msgpack.packb(GATT), msgpack.packb([{**GATT, "uuid": 0x2A18, "val": enc.glucose(1, WHEN, context_follows=True)},
                                             {**GATT, "uuid": 0x2A34, "val": enc.glucose_context(1, meal=2)}])]


@st.composite
def mutated(draw):
    payload = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(payload)))
        action = draw(st.sampled_from(["flip", "insert", "delete"]))
        if action == "flip" and at < len(payload):
            payload[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            payload[at:at] = draw(st.binary(min_size=1, max_size=3))
        else:
            del payload[at:at + draw(st.integers(1, 3))]
    return bytes(payload)


payloads = st.one_of(
    st.binary(max_size=64),
    objects.map(lambda x: msgpack.packb(x)),
    json_objects.map(lambda x: json.dumps(x).encode()),
    mutated(),
    st.sampled_from(VALID),
)
messages = st.lists(st.builds(Inbound, TOPICS, payloads, st.integers(NOW - 10**9, NOW)), max_size=6)


def check_invariants(batch_messages, decoded: Decoded):
    batch = decoded.batch
    n = len(batch)
    assert batch.dtype == core.READING_DTYPE
    for column in (decoded.message, decoded.element, decoded.battery, decoded.meal, decoded.hseq):
        assert len(column) == n
    assert set(batch["reason"].tolist()) <= ADAPTER_REASONS
    # ordered by (message, element); every message has rows for elements 0 .. k-1, one each but CGM
    assert np.all(np.diff(decoded.message.astype(np.int64) * 10_000 + decoded.element) >= 0)
    assert sorted(set(decoded.message.tolist())) == list(range(len(batch_messages)))
    for m in range(len(batch_messages)):
        elements = decoded.element[decoded.message == m]
        assert sorted(set(elements.tolist())) == list(range(len(set(elements.tolist()))))
        values, counts = np.unique(elements, return_counts=True)
        for element in values[counts > 1]:
            rows = batch[(decoded.message == m) & (decoded.element == element)]
            assert (rows["kind"] == Kind.CGM).all() and (rows["reason"] == Reason.OK).all()
    rejected = ~np.isin(batch["reason"], [Reason.OK, Reason.NOTNUM])
    assert np.isnan(batch["v"][rejected]).all()
    rows = set(zip(decoded.message.tolist(), decoded.element.tolist()))
    not_ok = {(m, e) for m, e, r in zip(decoded.message.tolist(), decoded.element.tolist(), batch["reason"])
              if r != Reason.OK}
    assert not_ok <= set(decoded.details) <= rows


@differential
@given(messages)
def test_nothing_raises_and_every_element_has_one_row(batch_messages):
    devices = DeviceIndex()
    decoded = decode_messages(batch_messages, devices)
    check_invariants(batch_messages, decoded)
    n_devices = max(len(devices), 1)
    pipeline = Pipeline(core.compiled, n_patients=1, tz_min=np.zeros(1, dtype=np.int16),
                        bindings=Bindings.from_tuples([(0, NO_USER, 0, OPEN_END, 0)], n_devices=n_devices))
    pipeline.process(decoded.batch.copy(), NOW)


def has_bin(o):
    if isinstance(o, bytes):
        return len(o) > 0  # a bin of 0 octets fits max_bin_len=0; the schema rejects it
    return any(map(has_bin, o.values() if isinstance(o, dict) else o if isinstance(o, list) else ()))


@differential
@given(st.lists(objects, min_size=1, max_size=5), st.booleans())
def test_element_count_of_random_objects(objs, as_json):
    if as_json:
        objs = [json.loads(json.dumps(o, default=lambda b: b.hex()).replace("NaN", "0").replace("Infinity", "1"))
                for o in objs]
    pack = (lambda o: json.dumps(o).encode()) if as_json else msgpack.packb
    batch_messages = [Inbound(DEV if i % 2 else HUB, pack(o), NOW) for i, o in enumerate(objs)]
    decoded = decode_messages(batch_messages, DeviceIndex())
    check_invariants(batch_messages, decoded)
    for i, o in enumerate(objs):
        rows = decoded.element[decoded.message == i]
        expected = len(o) if isinstance(o, list) and 0 < len(o) else 1
        if (as_json and i % 2 == 0) or (i % 2 and has_bin(o)):
            expected = 1  # the GATT topic takes msgpack only; a reading map never holds bin
        assert len(set(rows.tolist())) == expected
