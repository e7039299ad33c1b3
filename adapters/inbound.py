"""MQTT messages -> the core's columnar batch: the adapters' one entry point (sans-IO).

``decode_messages(messages, devices)`` takes the messages of one batch, each an ``Inbound``
(topic, payload octets, gateway arrival time) and returns a ``Decoded``: one READING_DTYPE
batch plus side columns, row for row. No sockets, no clock, no database; nothing raises for
any topic or payload.

Rows. Every element of every message has a row with exactly one reason (a single map is
element 0; an unparsable payload, an empty array or a bad topic is one row, element 0):

    OK        a reading map or GATT record decoded; the core validates it further
    NOTNUM    a reading map with NaN in an optional value (``adapters.codec``)
    DECODE    payload not msgpack/JSON or over a limit (``adapters.wire``); GATT value
              undecodable (core decoder)
    SCHEMA    element not a valid reading map / GATT record map (codec, gatt)
    TOPIC     not ``pmp/v1/dev/{id}/m`` or ``pmp/v1/hub/{id}/gatt`` (``adapters.topics``),
              a route its publisher's registered kind does not use (``ROUTE_KINDS``),
              or a GATT record's ``dev`` not a BLE address

The one exception to "one row per element": a CGM (0x2AA7) value holding several
Size-framed records gives one row per record, all with the same (message, element).
Rows are ordered by message, then element.

A row that the adapters reject (DECODE, SCHEMA, TOPIC, or rejected by the GATT decoder)
has kind from its ``type`` / uuid when known (else NONE), values NaN, rx the message's
arrival time, fingerprint FNV-1a 64 of the element's own octets (of the whole payload for a
single map or a failed payload; a GATT decoder failure hashes uuid and value, as the core
does) and device index:

    reading topic    the topic's device
    GATT topic       the record's meter when ``dev`` is valid, else the hub
    invalid topic    NO_DEVICE (-1): no id to register; the core's stages skip a row whose
                     reason is already set, so it never indexes by it

Decoded rows (OK, NOTNUM) have t, kind, v in canonical units, flags, seq, status, user,
unit_in, and a fingerprint: reading maps from ``core.fingerprint_readings`` (one call for
the batch), GATT records from the decoder. Reading maps take rx = the message's arrival
time, GATT records the hub's ``rx``.

Reading maps are decoded a group of like maps at a time (``adapters.columnar``), and those
it leaves one at a time by ``adapters.codec.reading_row``; ``columnar=False`` decodes every
map one at a time, the twin the columnar path is tested against. Both give the same
``Decoded``, byte for byte (tests/adapters/test_columnar.py).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

import core
from core.codes import AUX_ABSENT, NO_USER, Kind, Reason

from .codec import MEAL_ABSENT, Row, kind_of, reading_row
from .columnar import Block, Columns
from .devices import DeviceIndex
from .gatt import HSEQ_ABSENT, GattRecords, GattRows
from .topics import ROUTE_KINDS, Route, parse_topic
from .wire import Format, Rejected, element_spans, fnv1a64, parse, sniff

NO_DEVICE = -1
NOTNUM_DETAIL = "NaN or infinity in an optional value (map, pul, trend, bat)"


class Inbound(NamedTuple):
    """One MQTT message as it arrived: topic, payload octets, gateway arrival time (ms UTC)."""

    topic: str
    payload: bytes
    rx_ms: int


@dataclass(frozen=True, eq=False)
class Decoded:
    """The rows of a batch of messages, column by column (n rows each).

    batch     READING_DTYPE[n], reasons set by the adapters (OK for rows the core checks)
    message   int32[n], index in ``messages`` of the message the row came from
    element   int32[n], index of the element in the message's array (0 for a single map)
    battery   float64[n], battery percent from a reading map's ``bat``; NaN = absent
    meal      uint8[n], meal code (``adapters.codec.MEALS``; 0 = absent), from a reading
              map's ``meal`` or a joined glucose context record
    hseq      int64[n], the hub's message sequence number of a GATT record; -1 = absent
    details   (message, element) -> why the adapters rejected it (rows not OK only)
    """

    batch: np.ndarray
    message: np.ndarray
    element: np.ndarray
    battery: np.ndarray
    meal: np.ndarray
    hseq: np.ndarray
    details: dict[tuple[int, int], str]

    def __len__(self) -> int:
        return len(self.batch)


def decode_messages(messages: Sequence[Inbound], devices: DeviceIndex, *, kinds: Mapping[str, str] | None = None,
                    columnar: bool = True) -> Decoded:
    """Decode a batch of messages (see the module docstring); ``devices`` assigns indexes to
    new ids; ``kinds``: registered id -> kind, for ``topics.ROUTE_KINDS`` (a message on a
    route its publisher's kind does not use is TOPIC). Raises only on a caller bug (``rx_ms`` not an int), never for a topic or payload.
    ``columnar=False``: each reading map alone, the twin (module docstring)."""
    readings = _ColumnarRows() if columnar else _ReadingRows()
    gatt = GattRecords(devices)
    kinds = kinds or {}
    for i, (topic, payload, rx_ms) in enumerate(messages):
        parsed = parse_topic(topic)
        if type(payload) is not bytes:
            payload = bytes(payload) if isinstance(payload, (bytearray, memoryview)) else None
        if parsed is None:
            readings.reject_message(i, NO_DEVICE, rx_ms, payload, Rejected(Reason.TOPIC, "not an inbound topic", topic))
            continue
        route, publisher = parsed
        kind = kinds.get(publisher)
        if kind is not None and kind not in ROUTE_KINDS[route]:
            readings.reject_message(i, devices.index(publisher), rx_ms, payload, Rejected(
                Reason.TOPIC, f"{publisher} is registered as {kind}, which does not publish on {route.value}", topic))
        elif payload is None:
            readings.reject_message(i, devices.index(publisher), rx_ms, payload,
                                    Rejected(Reason.DECODE, "payload is not bytes"))
        elif route is Route.READINGS:
            readings.add(payload, i, devices.index(publisher), rx_ms)
        else:
            gatt.add(payload, i, devices.index(publisher), rx_ms)
    return _merge(readings.finish(), gatt.decode())


class _Message:
    """A parsed reading message: its number in the batch, its first row, and its payload
    for the octets of its rejected elements (their spans found once, when first needed)."""

    __slots__ = ("message", "payload", "fmt", "is_array", "first_row", "octet_spans")

    def __init__(self, message: int, payload: bytes, fmt: Format, is_array: bool, first_row: int) -> None:
        self.message, self.payload, self.fmt, self.is_array, self.first_row = message, payload, fmt, is_array, first_row
        self.octet_spans: list[tuple[int, int]] | None = None

    def octets(self, element: int) -> bytes:
        """The octets of one element: its own in an array, else the whole payload."""
        if not self.is_array:
            return self.payload
        if self.octet_spans is None:
            self.octet_spans = element_spans(self.payload, self.fmt)
        start, end = self.octet_spans[element]
        return self.payload[start:end]


class _ReadingRows:
    """Rows of reading-map messages (and of messages with no valid topic), each map decoded
    alone by ``codec.reading_row`` as its message is parsed: the twin ``_ColumnarRows`` is
    tested against. Rows are numbered in arrival order (message, then element)."""

    def __init__(self) -> None:
        self.n = 0  # rows so far
        self.rows: list[Row] = []  # rows built one at a time (reading_row, rejections) ...
        self.at: list[int] = []  # ... and their row numbers
        self.spans: list[tuple[int, int, int, int]] = []  # (message, device, rx, n rows) per message
        self.raw_fingerprints: dict[int, int] = {}  # row -> FNV-1a of its raw octets
        self.details: dict[tuple[int, int], str] = {}

    def add(self, payload: bytes, message: int, device: int, rx_ms: int) -> None:
        fmt = sniff(payload)
        try:
            elements, is_array = parse(payload, fmt)
        except Rejected as rejected:
            self.reject_message(message, device, rx_ms, payload, rejected)
            return
        self._elements(_Message(message, payload, fmt, is_array, self.n), elements)
        self.spans.append((message, device, rx_ms, len(elements)))
        self.n += len(elements)

    def _elements(self, source: _Message, elements: list) -> None:
        self._decode_each(source, enumerate(elements))

    def _decode_each(self, source: _Message, numbered: Iterable[tuple[int, Any]]) -> None:
        """The row of each ``(i, element)`` of ``source``: ``codec.reading_row``, or its rejection."""
        rows, at, first_row = self.rows, self.at, source.first_row
        for i, element in numbered:
            try:
                rows.append(reading_row(element))
            except Rejected as rejected:
                self._reject(first_row + i, source.message, i, kind_of(element), rejected, source.octets(i))
            else:
                at.append(first_row + i)

    def reject_message(self, message: int, device: int, rx_ms: int, payload: bytes | None,
                       rejected: Rejected) -> None:
        self._reject(self.n, message, 0, Kind.NONE, rejected, payload or b"")
        self.spans.append((message, device, rx_ms, 1))
        self.n += 1

    def _reject(self, row: int, message: int, element: int, kind: Kind, rejected: Rejected, octets: bytes) -> None:
        self.raw_fingerprints[row] = fnv1a64(octets)
        self.rows.append((0, math.nan, math.nan, math.nan, math.nan, 0, 0, 0, int(kind), int(rejected.reason),
                          0, NO_USER, AUX_ABSENT, math.nan, MEAL_ABSENT))
        self.at.append(row)
        self.details[(message, element)] = str(rejected)

    def finish(self) -> Decoded:
        """The rows as columns, fingerprints computed."""
        return self._columns([])

    def _columns(self, blocks: Sequence[Block]) -> Decoded:
        """The rows built one at a time and the ``blocks`` as columns, fingerprints computed."""
        n = self.n
        batch = core.empty_batch(n)
        battery = np.full(n, math.nan)
        meal = np.zeros(n, dtype=np.uint8)
        for at, columns in blocks:
            _put(batch, battery, meal, at, columns)
        if self.rows:
            _put(batch, battery, meal, np.array(self.at, dtype=np.intp), tuple(zip(*self.rows)))
        message, device, rx, counts = (np.array(column, dtype=np.int64).reshape(-1)
                                       for column in (zip(*self.spans) if self.spans else [()] * 4))
        batch["device"] = np.repeat(device, counts)
        batch["rx"] = np.repeat(rx, counts)
        row_message = np.repeat(message, counts).astype(np.int32)
        element = (np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)).astype(np.int32)
        core.fingerprint_readings(batch["kind"], batch["flags"], batch["user"], batch["t"], batch["v"],
                                  batch["fingerprint"])
        if self.raw_fingerprints:
            batch["fingerprint"][list(self.raw_fingerprints)] = np.array(list(self.raw_fingerprints.values()),
                                                                        dtype=np.uint64)
        details = dict(sorted(self.details.items()))  # in row order, however the rows were built
        for i in np.flatnonzero(batch["reason"] == Reason.NOTNUM):
            details[(int(row_message[i]), int(element[i]))] = NOTNUM_DETAIL
        return Decoded(batch, row_message, element, battery, meal, np.full(n, HSEQ_ABSENT, dtype=np.int64), details)


class _ColumnarRows(_ReadingRows):
    """``_ReadingRows`` with the maps decoded a group at a time (``columnar.Columns``), about
    every ``columnar.CHUNK`` elements, while their objects are still in the CPU cache. The
    elements left are decoded one at a time there and then, as the twin does; so are the
    messages ``Columns.passes``."""

    def __init__(self) -> None:
        super().__init__()
        self.decoded = Columns()
        self.sources: list[_Message] = []  # the parsed messages ...
        self.first_rows: list[int] = []  # ... and their first rows, ascending

    def _elements(self, source: _Message, elements: list) -> None:
        if self.decoded.passes(len(elements)):
            self._decode_each(source, enumerate(elements))
            return
        self.sources.append(source)
        self.first_rows.append(source.first_row)
        self._decode_left(self.decoded.add(elements, source.first_row))

    def _decode_left(self, left: list[tuple[int, Any]]) -> None:
        """Decode one at a time the elements ``(row, element)`` the columnar path left."""
        for source, same_source in itertools.groupby(left, lambda row_element: self._source_of(row_element[0])):
            self._decode_each(source, ((row - source.first_row, element) for row, element in same_source))

    def _source_of(self, row: int) -> _Message:
        return self.sources[bisect.bisect_right(self.first_rows, row) - 1]

    def finish(self) -> Decoded:
        self._decode_left(self.decoded.flush())
        return self._columns(self.decoded.blocks())


def _put(batch: np.ndarray, battery: np.ndarray, meal: np.ndarray, at: np.ndarray, columns: Sequence) -> None:
    """Write ``columns`` (``codec.ROW_FIELDS``, each len(at) values or one value) into the rows ``at``."""
    (t, v0, v1, v2, v3, seq, status, flags, kind, reason, unit_in, user, aux0, battery_percent,
     meal_code) = columns
    batch["t"][at], batch["seq"][at], batch["status"][at], batch["flags"][at] = t, seq, status, flags
    batch["kind"][at], batch["reason"][at], batch["unit_in"][at], batch["user"][at] = kind, reason, unit_in, user
    v = batch["v"]
    v[at, 0], v[at, 1], v[at, 2], v[at, 3] = v0, v1, v2, v3
    batch["aux"][at, 0] = aux0
    battery[at], meal[at] = battery_percent, meal_code


def _merge(readings: Decoded, gatt: GattRows) -> Decoded:
    """Both parts in one, ordered by (message, element); the reading part is ordered already."""
    if not len(gatt.batch):
        return readings
    columns = [np.concatenate(pair) for pair in (
        (readings.batch, gatt.batch), (readings.message, gatt.message), (readings.element, gatt.element),
        (readings.battery, np.full(len(gatt.batch), math.nan)), (readings.meal, gatt.meal),
        (readings.hseq, gatt.hseq))]
    order = np.lexsort((columns[2], columns[1]))
    return Decoded(*(column[order] for column in columns), {**readings.details, **gatt.details})
