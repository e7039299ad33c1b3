"""Strict, bounded parsing of untrusted payloads into elements, and the octets of each element.

A payload is one map or an array of maps, msgpack or JSON (``Format``). Parsing yields the
*elements*: a single map is one element, an array's items are its elements. Every map, at
any depth, arrives as a **tuple of (key, value) pairs** in wire order (``object_pairs_hook
=tuple`` in both formats), so nothing is lost before the schema sees it: duplicate keys are
still there to be rejected, and the caller builds its own dict. Arrays arrive as lists; a
top-level map is therefore a tuple, a top-level array a list.

What fails here fails the whole payload (one row, reason DECODE, ``Rejected``):

    size        more than MAX_PAYLOAD_OCTETS octets
    syntax      not msgpack / not UTF-8 JSON, trailing data, invalid UTF-8 in a str
    limits      an array longer than MAX_ELEMENTS, a map with more than MAX_MAP_KEYS keys,
                a str longer than MAX_STR_OCTETS, a bin longer than the format allows
                (MAX_BIN_OCTETS, GATT values; 0 in reading maps), an ext type with data,
                a msgpack map key that is not a str (strict_map_key)
    nesting     deeper than msgpack's unpacker stack or Python's recursion limit (both bound
                the work; the schemas accept no container inside a map at all)
    empty       an empty array (a message carries at least one element)

What is wrong inside one element is the schema's business (SCHEMA for that element only):
duplicate keys, JSON ``NaN``/``Infinity`` literals (parsed to JSON_CONSTANT markers that
no schema accepts), booleans, wrong types.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import msgpack

from core.codes import Reason

MAX_PAYLOAD_OCTETS = 256 * 1024
MAX_ELEMENTS = 1_000
MAX_MAP_KEYS = 32
MAX_STR_OCTETS = 256
MAX_BIN_OCTETS = 512  # the longest attribute value ATT allows

FNV_OFFSET_BASIS = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_U64 = 2**64 - 1


class Format(enum.Enum):
    """How a payload is encoded."""

    MSGPACK = "msgpack"
    JSON = "json"


class Rejected(ValueError):
    """An input the adapters reject: ``reason`` (core.codes.Reason), ``detail`` for operators,
    ``value`` the offending value (or None). Raised and caught inside ``adapters``; what
    leaves ``decode_messages`` is a row with the reason, never this exception."""

    def __init__(self, reason: Reason, detail: str, value: Any = None) -> None:
        super().__init__(f"{reason.name}: {detail}" + ("" if value is None else f": {_short(value)}"))
        self.reason = reason
        self.detail = detail
        self.value = value


class JsonConstant:
    """What a JSON ``NaN``, ``Infinity`` or ``-Infinity`` literal parses to: a marker, never a number."""

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal

    def __repr__(self) -> str:
        return f"JSON literal {self.literal}"


JSON_OPENERS = frozenset(b"{[")

_JSON_DECODER = json.JSONDecoder(object_pairs_hook=tuple, parse_constant=JsonConstant)


def _msgpack_options(max_bin: int) -> dict[str, Any]:
    return dict(raw=False, strict_map_key=True, object_pairs_hook=tuple, use_list=True, max_str_len=MAX_STR_OCTETS, max_bin_len=max_bin,
                max_array_len=MAX_ELEMENTS, max_map_len=MAX_MAP_KEYS, max_ext_len=0)


# max bin octets -> unpacker options; reading maps allow no bin, GATT records their values.
_MSGPACK_OPTIONS = {limit: _msgpack_options(limit) for limit in (0, MAX_BIN_OCTETS)}


def sniff(payload: bytes) -> Format:
    """JSON when the first octet is ``{`` or ``[`` (DESIGN.md), msgpack otherwise."""
    return Format.JSON if payload and payload[0] in JSON_OPENERS else Format.MSGPACK


def parse(payload: bytes, fmt: Format, *, max_bin: int = 0) -> tuple[list[Any], bool]:
    """The elements of ``payload`` and whether it was an array.

    ``max_bin`` is the longest msgpack bin accepted (0: none). Raises ``Rejected`` with
    reason DECODE for everything in the module docstring's first table.
    """
    if len(payload) > MAX_PAYLOAD_OCTETS:
        raise Rejected(Reason.DECODE, f"payload over {MAX_PAYLOAD_OCTETS} octets", len(payload))
    try:
        if fmt is Format.JSON:
            top = _JSON_DECODER.decode(payload.decode("utf-8"))
        else:
            top = msgpack.unpackb(payload, **_MSGPACK_OPTIONS[max_bin])
    except RecursionError:
        raise Rejected(Reason.DECODE, f"{fmt.value} nested too deeply") from None
    except (ValueError, msgpack.UnpackException) as error:  # every parser failure (and UnicodeDecodeError)
        raise Rejected(Reason.DECODE, f"not {fmt.value}: {type(error).__name__}: {_short(error)}") from None
    if type(top) is not list:
        return [top], False
    if not top:
        raise Rejected(Reason.DECODE, "empty array")
    if len(top) > MAX_ELEMENTS:  # JSON has no max_array_len
        raise Rejected(Reason.DECODE, f"array of more than {MAX_ELEMENTS} elements", len(top))
    return top, True


def element_spans(payload: bytes, fmt: Format) -> list[tuple[int, int]]:
    """Octet span ``(start, end)`` of each element of an array payload that ``parse`` accepted.

    Called only when an element is rejected (its fingerprint is of its own octets), once per
    payload: one pass over the array, O(payload) work.
    """
    if fmt is Format.JSON:
        return _json_spans(payload)
    unpacker = msgpack.Unpacker(max_buffer_size=max(len(payload), 1))
    unpacker.feed(payload)
    n = unpacker.read_array_header()
    spans = []
    start = unpacker.tell()
    for _ in range(n):
        unpacker.skip()
        end = unpacker.tell()
        spans.append((start, end))
        start = end
    return spans


def _json_spans(payload: bytes) -> list[tuple[int, int]]:
    text = payload.decode("utf-8")
    ws = " \t\n\r"
    at, spans = 1, []
    while True:
        while text[at] in ws:
            at += 1
        _, end = _JSON_DECODER.raw_decode(text, at)
        spans.append((at, end))
        at = end
        while text[at] in ws:
            at += 1
        if text[at] == "]":
            break
        at += 1  # ","
    if text.isascii():
        return spans
    # character offsets -> octet offsets (the text came from valid UTF-8), in one pass
    octet_spans, char_at, octet_at = [], 0, 0
    for start, end in spans:
        octet_at += len(text[char_at:start].encode())
        octet_start = octet_at
        octet_at += len(text[start:end].encode())
        octet_spans.append((octet_start, octet_at))
        char_at = end
    return octet_spans


def map_of(element: Any, what: str) -> dict:
    """The dict of a parsed map (the parsers hand maps over as tuples of key-value pairs, so
    a repeated key is still visible here); raises SCHEMA when ``element`` is not a map or
    repeats a key. ``what`` names the element in the message ("reading", "GATT record")."""
    if type(element) is not tuple:
        raise Rejected(Reason.SCHEMA, f"{what} is not a map", element)
    m = dict(element)
    if len(m) != len(element):
        raise Rejected(Reason.SCHEMA, "duplicate key", _duplicate_key(element))
    return m


def _duplicate_key(pairs: tuple) -> Any:
    """The first key that occurs twice in a map's pairs (None when none does)."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None


def fnv1a64(octets: bytes) -> int:
    """FNV-1a 64 of ``octets``: the fingerprint of a rejected payload or element.

    Plain Python (about 0.1 us an octet): called only for rejected input, never per reading.
    """
    h = FNV_OFFSET_BASIS
    for octet in octets:
        h = ((h ^ octet) * FNV_PRIME) & _U64
    return h


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
