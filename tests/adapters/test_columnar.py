"""The columnar decoder of reading maps against its twin, the per-map ``reading_row`` path.

``decode_messages(..., columnar=True)`` must give the very ``Decoded`` that
``columnar=False`` gives, byte for byte, whatever arrives: valid maps in any key order and
invalid ones (wrong types, bools, NaN and infinities, huge ints, unknown, repeated or
missing keys, LO/HI, units, meal and src names), JSON and msgpack, arrays and single maps,
payloads that do not parse. MIN_GROUP, CHUNK and PASS are drawn small too, so that small
batches go through the columnar path, across chunk boundaries, and past it.
"""

import datetime
import json
import math
import struct
from unittest import mock

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters import columnar
from adapters import gatt_encode as enc
from adapters.codec import MEALS, READING_TYPES, SOURCES
from adapters.devices import DeviceIndex
from adapters.inbound import Decoded, Inbound, decode_messages
from core.codes import Reason
from tests.conftest import differential

T = 1_764_071_940_000
DEV = "pmp/v1/dev/d1/m"
SIGNALLING_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0_0000_0000_0001))[0]  # msgpack keeps the bits
GATT = msgpack.packb({"dev": "AA:BB:CC:DD:EE:01", "uuid": 0x2A35, "rx": T, "tz": 0, "hseq": 3,
                      "val": enc.blood_pressure(enc.sfloat(128), enc.sfloat(82), enc.sfloat(97),
                                                when=datetime.datetime(2025, 11, 25, 9, 0))})


def assert_same(fast: Decoded, twin: Decoded) -> None:
    assert fast.batch.dtype == twin.batch.dtype
    assert fast.batch.tobytes() == twin.batch.tobytes()
    for column in ("message", "element", "battery", "meal", "hseq"):
        a, b = getattr(fast, column), getattr(twin, column)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), column
    assert list(fast.details.items()) == list(twin.details.items())


def both(messages, *, min_group=columnar.MIN_GROUP, chunk=columnar.CHUNK, passing=columnar.PASS):
    with mock.patch.multiple(columnar, MIN_GROUP=min_group, CHUNK=chunk, PASS=passing):
        fast = decode_messages(messages, DeviceIndex())
    return fast, decode_messages(messages, DeviceIndex(), columnar=False)


# ---- payloads built pair by pair (repeated keys, any order), msgpack or JSON -------------------------

class Pairs(list):
    """A map as its (key, value) pairs, in wire order."""


def pack_msgpack(elements, single):
    packer = msgpack.Packer()

    def element(e):
        if isinstance(e, Pairs):
            return packer.pack_map_header(len(e)) + b"".join(packer.pack(k) + packer.pack(v) for k, v in e)
        return packer.pack(e)

    if single:
        return element(elements[0])
    return packer.pack_array_header(len(elements)) + b"".join(map(element, elements))


def pack_json(elements, single):
    def text(x):
        return json.dumps(x, default=lambda octets: octets.hex())

    def element(e):
        if isinstance(e, Pairs):
            return "{" + ", ".join(f"{text(k)}: {text(v)}" for k, v in e) + "}"
        return text(e)

    return (element(elements[0]) if single else "[" + ", ".join(map(element, elements)) + "]").encode()


def encode(elements, single, as_json):
    if not as_json:
        try:
            return pack_msgpack(elements, single)
        except (OverflowError, TypeError):  # an int msgpack cannot hold: JSON can
            pass
    return pack_json(elements, single)


# ---- maps: a few templates per batch (type and key order), values mostly valid -----------------------

EDGE_INTS = [0, 1, -1, 2**31, 2**32 - 1, 2**32, 2**53, 2**53 + 1, -(2**53) - 1, 2**63 - 1, -(2**63), 2**63, 2**64 - 1]
NANS = [math.nan, -math.nan, SIGNALLING_NAN, -SIGNALLING_NAN,
        struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]]  # a payload
numbers = st.one_of(st.integers(-300, 300), st.floats(), st.floats(0, 400), st.integers(-(2**63), 2**64 - 1),
                    st.sampled_from(EDGE_INTS + NANS + [math.inf, -math.inf, 1e308, -0.0]))
VALID = {
    "seq": st.integers(0, 2**32 - 1), "t": st.integers(-(2**63), 2**63 - 1), "st": st.integers(0, 0xFFFF),
    "user": st.integers(0, 0xFF), "meal": st.sampled_from(sorted(MEALS)), "src": st.sampled_from(sorted(SOURCES)),
}
invalid = st.one_of(st.booleans(), st.none(), st.text(max_size=3), st.floats(), st.sampled_from(EDGE_INTS),
                    st.integers(-(2**70), 2**70), st.just(10**400), st.lists(st.integers(0, 9), max_size=2),
                    st.sampled_from(["LO", "HI", "lo", "bp", "cgm", "kPa", "mg/dL", "pre", "venous", "", b""]))
OTHER_KEYS = ["x", "glu", "sys", "dia", "meal", "src", "trend", "map", "u"]
NOT_MAPS = [5, "bp", [1, 2], None, True, 1.5, []]


@st.composite
def templates(draw):
    """A type and a key order, sometimes with a key too many or one missing."""
    name = draw(st.sampled_from(sorted(READING_TYPES)))
    spec = READING_TYPES[name]
    keys = sorted(spec.needs) + draw(st.lists(st.sampled_from(sorted(spec.keys - spec.needs)), unique=True))
    if draw(st.integers(0, 7)) == 0:
        keys.append(draw(st.sampled_from(OTHER_KEYS)))
    if draw(st.integers(0, 7)) == 0:
        keys.remove(draw(st.sampled_from(keys)))
    return name, draw(st.permutations(keys))


@st.composite
def readings(draw, template, one_in):
    """A map of the template's keys; each value invalid one time in ``one_in`` (never if 0)."""
    def odd():
        return one_in and draw(st.integers(1, one_in)) == 1

    name, keys = template
    pairs = Pairs()
    for key in keys:
        if key == "type":
            value = draw(st.sampled_from(sorted(READING_TYPES) + ["BP", 1])) if odd() else name
        elif odd():
            value = draw(invalid)
        elif key == "u":
            value = draw(st.sampled_from(sorted(READING_TYPES[name].units)))
        elif key == "glu" and odd():
            value = draw(st.sampled_from(["LO", "HI"]))
        else:
            value = draw(VALID.get(key, numbers))
        pairs.append((key, value))
    if pairs and odd():
        pairs.append(draw(st.sampled_from(pairs)))  # a repeated key
    return pairs


@st.composite
def reading_messages(draw, kinds, one_in):
    kind = draw(st.integers(0, 15))
    rx = draw(st.integers(0, 2**41))
    if kind == 0:
        return Inbound(DEV, draw(st.binary(max_size=12)), rx)
    if kind == 1:
        return Inbound("pmp/v1/hub/h1/gatt", GATT, rx)
    elements = [draw(readings(draw(st.sampled_from(kinds)), one_in)) for _ in range(draw(st.integers(1, 20)))]
    if draw(st.integers(0, 7)) == 0:
        elements.insert(draw(st.integers(0, len(elements))), draw(st.sampled_from(NOT_MAPS)))
    payload = encode(elements, len(elements) == 1 and draw(st.booleans()), draw(st.booleans()))
    topic = DEV if draw(st.integers(0, 15)) else draw(st.sampled_from(["pmp/v1/dev/d2/m", "pmp/v1/dev/a b/m"]))
    return Inbound(topic, payload, rx)


batches = st.tuples(st.lists(templates(), min_size=1, max_size=3), st.sampled_from([0, 12, 60])).flatmap(
    lambda drawn: st.lists(reading_messages(*drawn), min_size=1, max_size=5))


@differential
@given(batches, st.sampled_from([1, 2, 3, 16]), st.sampled_from([1, 5, 32, 2048]), st.sampled_from([0, 7, 8192]))
def test_columnar_equals_the_per_map_twin(messages, min_group, chunk, passing):
    assert_same(*both(messages, min_group=min_group, chunk=chunk, passing=passing))


# ---- examples at the shipped MIN_GROUP and CHUNK --------------------------------------------------------

BP = {"seq": 1, "t": T, "type": "bp", "sys": 128, "dia": 82, "pul": 71}
GLU = {"seq": 2, "t": T, "type": "glu", "glu": 5.4, "meal": "pre"}
CGM = {"t": T, "type": "cgm", "glu": 6.1, "trend": -0.05}


def batch_of(*variants, n=60, as_json=False):
    """Messages of n maps each, cycling through ``variants``, seq counting up."""
    maps = [{**variants[i % len(variants)], "seq": i} for i in range(n)]
    pack = (lambda x: json.dumps(x).encode()) if as_json else msgpack.packb
    return [Inbound(DEV, pack(maps), T + 60_000), Inbound(DEV, pack(maps[::-1]), T + 60_000)]


CASES = {
    "bp and glucose": [BP, GLU],
    "units": [{**BP, "u": "kPa", "sys": 17.3, "dia": 11.1, "map": 13.2}, {**BP, "u": "mmHg"},
              {**GLU, "u": "mg/dL", "glu": 99}, {**CGM, "u": "mg/dL", "glu": 120, "trend": -1.5}, CGM],
    "optional values": [{**BP, "map": 97, "st": 0x23, "user": 3, "bat": 55.5}, {**GLU, "src": "control"},
                        {**GLU, "src": "venous", "meal": "bedtime"}, {**BP, "st": 0x04}],
    "notnum": [{**BP, "map": math.nan}, {**BP, "pul": math.nan}, {**CGM, "trend": math.nan},
               {**BP, "bat": math.inf}, {**BP, "sys": math.nan}, {**GLU, "glu": -math.inf}],
    "censored": [{**GLU, "glu": "LO"}, {**CGM, "glu": "HI"}, GLU],
    "big ints": [{**BP, "sys": 2**53 + 1}, {**BP, "dia": 2**63 - 1}, {**BP, "pul": 2**64 - 1}, BP],
    "schema": [{**BP, "seq": True}, {**BP, "sys": "128"}, {**BP, "x": 1}, {**GLU, "meal": "lunch"}, BP],
    "mixed glucose types": [{"t": T, "type": "glu", "glu": 5.5}, {"t": T, "type": "cgm", "glu": 5.5}],
    "nan bits": [{**BP, "u": "kPa", "sys": SIGNALLING_NAN, "map": -math.nan, "bat": SIGNALLING_NAN},
                 {**CGM, "u": "mg/dL", "glu": SIGNALLING_NAN, "trend": SIGNALLING_NAN}, {**BP, "u": "kPa"}],
}


@pytest.mark.parametrize("as_json", [False, True], ids=["msgpack", "json"])
@pytest.mark.parametrize("variants", CASES.values(), ids=CASES.keys())
def test_columnar_equals_the_twin_at_the_shipped_limits(variants, as_json):
    assert_same(*both(batch_of(*variants, as_json=as_json)))


def test_a_chunk_boundary_inside_a_message():
    messages = batch_of(BP, GLU, n=700) * 2
    fast, twin = both(messages)
    assert_same(fast, twin)
    assert (fast.batch["reason"] == Reason.OK).all() and len(fast) == 4 * 700


def test_valid_groups_are_decoded_in_columns():
    """The columnar path really decodes them, and leaves a doubtful map alone to reading_row."""
    decoded = columnar.Columns()
    cgm = [{**CGM, "trend": True}] + [CGM] * 19 + [{**CGM, "glu": "HI"}]
    elements = [tuple(m.items()) for m in [BP] * 20 + [GLU] * 20 + cgm]
    assert decoded.add(elements, 100) == []  # fewer than CHUNK: nothing checked yet
    assert decoded.flush() == [(140, elements[40]), (160, elements[60])]
    assert sorted(block.rows.tolist() for block in decoded.blocks()) == [
        list(range(100, 120)), list(range(120, 140)), list(range(141, 160))]


def test_small_groups_are_left():
    decoded = columnar.Columns()
    elements = [tuple(BP.items())] * (columnar.MIN_GROUP - 1) + [tuple(GLU.items())] * columnar.MIN_GROUP
    decoded.add(elements[:5], 0)
    decoded.add(elements[5:], 5)
    assert [row for row, _ in decoded.flush()] == list(range(columnar.MIN_GROUP - 1))
    assert [block.rows.tolist() for block in decoded.blocks()] == [list(range(columnar.MIN_GROUP - 1, len(elements)))]


def test_every_chunk_is_checked_while_fresh():
    decoded = columnar.Columns()
    chunk = [tuple(BP.items())] * columnar.CHUNK
    assert decoded.add(chunk[:-1], 0) == [] and decoded.add(chunk[-1:] + [5], columnar.CHUNK - 1) == [
        (columnar.CHUNK, 5)]
    assert decoded.flush() == [] and len(decoded.blocks()[0].rows) == columnar.CHUNK


def test_after_a_chunk_left_mostly_the_next_elements_pass():
    decoded = columnar.Columns()
    two_orders = [tuple(BP.items())[::-1], tuple(BP.items())] * (columnar.CHUNK // 4)  # two groups, both valid
    odd = [(("t", T), ("type", "bp"), ("x", i)) for i in range(columnar.CHUNK // 2)]  # unknown key: all left
    assert not decoded.passes(1) and len(decoded.add(two_orders + odd, 0)) == columnar.CHUNK // 2
    assert not decoded.passes(1)  # half left: not most
    assert len(decoded.add(odd * 2, columnar.CHUNK)) == columnar.CHUNK
    assert decoded.passes(columnar.PASS - 1) and decoded.passes(1) and not decoded.passes(1)
