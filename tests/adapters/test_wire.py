"""Strict, bounded payload parsing: what fails a whole payload, and the octets of each element."""

import json

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.wire import (
    MAX_ELEMENTS,
    MAX_PAYLOAD_OCTETS,
    Format,
    JsonConstant,
    Rejected,
    element_spans,
    fnv1a64,
    parse,
    sniff,
)
from core.codes import Reason
from core.reference.fingerprint import fnv1a64 as reference_fnv1a64
from tests.conftest import differential


def test_sniff():
    assert sniff(b'{"t": 1}') is Format.JSON and sniff(b"[{}]") is Format.JSON
    assert sniff(b"\x81") is Format.MSGPACK and sniff(b" {") is Format.MSGPACK and sniff(b"") is Format.MSGPACK


@pytest.mark.parametrize("fmt", list(Format))
def test_maps_arrive_as_pairs_in_wire_order_with_duplicates(fmt):
    payload = b'[{"b": 1, "a": 2, "b": 3}]' if fmt is Format.JSON else b"\x91\x83\xa1b\x01\xa1a\x02\xa1b\x03"
    assert parse(payload, fmt) == ([(("b", 1), ("a", 2), ("b", 3))], True)


def test_single_map_is_one_element():
    assert parse(msgpack.packb({"a": 1}), Format.MSGPACK) == ([(("a", 1),)], False)


def test_json_constants_parse_to_markers():
    (element,), _ = parse(b'{"a": NaN, "b": -Infinity}', Format.JSON)
    assert [type(value) for _, value in element] == [JsonConstant, JsonConstant]
    assert element[1][1].literal == "-Infinity"


# payload, format, words of the detail
FAILURES = [
    (b"\xc1", Format.MSGPACK, "not msgpack"),
    (b"\x81\xa1a", Format.MSGPACK, "not msgpack"),  # truncated
    (msgpack.packb({"a": 1}) + b"\x00", Format.MSGPACK, "not msgpack"),  # extra data
    (msgpack.packb({1: 2}), Format.MSGPACK, "not msgpack"),  # strict_map_key
    (msgpack.packb({"a": b"x"}), Format.MSGPACK, "not msgpack"),  # no bin in reading maps
    (msgpack.packb({"a": msgpack.ExtType(1, b"x")}), Format.MSGPACK, "not msgpack"),
    (b"\x81\xa1a\xd6\xff\x00\x00\x00\x01", Format.MSGPACK, "not msgpack"),  # timestamp ext
    (b"\x81\xa2\xff\xfe\x01", Format.MSGPACK, "not msgpack"),  # invalid UTF-8 str
    (msgpack.packb({"a": "x" * 257}), Format.MSGPACK, "not msgpack"),
    (msgpack.packb({str(k): k for k in range(33)}), Format.MSGPACK, "not msgpack"),
    (msgpack.packb([{}] * (MAX_ELEMENTS + 1)), Format.MSGPACK, "not msgpack"),
    (b"\x91" * 5000 + b"\x80", Format.MSGPACK, "not msgpack"),  # nested beyond the unpacker's stack
    (b"[" * 100_000, Format.JSON, "nested too deeply"),
    (b"{'a': 1}", Format.JSON, "not json"),
    (b'{"a": 1} x', Format.JSON, "not json"),
    (b'{"a": "\xff"}', Format.JSON, "not json"),
    (b'{"a": "\x01"}', Format.JSON, "not json"),  # control character in a string
    (json.dumps([{}] * (MAX_ELEMENTS + 1)).encode(), Format.JSON, "more than 1000"),
    (b"[]", Format.JSON, "empty array"),
    (b"\x90", Format.MSGPACK, "empty array"),
    (b"\x80" + b"\x00" * MAX_PAYLOAD_OCTETS, Format.MSGPACK, "over 262144 octets"),
]


@pytest.mark.parametrize("payload, fmt, words", FAILURES)
def test_whole_payload_failures_are_decode(payload, fmt, words):
    with pytest.raises(Rejected, match=words) as caught:
        parse(payload, fmt)
    assert caught.value.reason is Reason.DECODE


def test_arrays_at_the_limit_parse():
    for fmt, payload in ((Format.MSGPACK, msgpack.packb([{}] * MAX_ELEMENTS)),
                         (Format.JSON, json.dumps([{}] * MAX_ELEMENTS).encode())):
        elements, is_array = parse(payload, fmt)
        assert len(elements) == MAX_ELEMENTS and is_array


def test_gatt_values_may_be_bin():
    payload = msgpack.packb({"val": b"\x01" * 512})
    assert parse(payload, Format.MSGPACK, max_bin=512)[0] == [(("val", b"\x01" * 512),)]
    with pytest.raises(Rejected):
        parse(msgpack.packb({"val": b"\x01" * 513}), Format.MSGPACK, max_bin=512)


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
                         st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)


@differential
@given(st.lists(json_values, min_size=1, max_size=6), st.sampled_from([None, 0, 2]))
def test_element_spans_cover_each_element(elements, indent):
    for fmt, payload in ((Format.MSGPACK, msgpack.packb(elements)),
                         (Format.JSON, json.dumps(elements, indent=indent, ensure_ascii=False).encode())):
        spans = element_spans(payload, fmt)
        assert len(spans) == len(elements)
        for (start, end), element in zip(spans, elements):
            octets = payload[start:end]
            again = json.loads(octets) if fmt is Format.JSON else msgpack.unpackb(octets, strict_map_key=False)
            assert again == element


@given(st.binary(max_size=64))
def test_fnv1a64_equals_the_core_twin(octets):
    assert fnv1a64(octets) == reference_fnv1a64(octets)


def test_fnv1a64_known_values():
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
