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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

import core
from core.codes import AUX_ABSENT, NO_USER, Kind, Reason

from .codec import MEAL_ABSENT, ROW_FIELDS, Row, kind_of, reading_row
from .devices import DeviceIndex
from .gatt import HSEQ_ABSENT, GattRecords, GattRows
from .topics import Route, parse_topic
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


def decode_messages(messages: Sequence[Inbound], devices: DeviceIndex) -> Decoded:
    """Decode a batch of messages (see the module docstring); ``devices`` assigns indexes to
    new ids. Raises only on a caller bug (``rx_ms`` not an int), never for a topic or payload."""
    readings = _ReadingRows()
    gatt = GattRecords(devices)
    for i, (topic, payload, rx_ms) in enumerate(messages):
        parsed = parse_topic(topic)
        if type(payload) is not bytes:
            payload = bytes(payload) if isinstance(payload, (bytearray, memoryview)) else None
        if parsed is None:
            readings.reject_message(i, NO_DEVICE, rx_ms, payload, Rejected(Reason.TOPIC, "not an inbound topic", topic))
            continue
        route, publisher = parsed
        if payload is None:
            readings.reject_message(i, devices.index(publisher), rx_ms, payload,
                                    Rejected(Reason.DECODE, "payload is not bytes"))
        elif route is Route.READINGS:
            readings.add(payload, i, devices.index(publisher), rx_ms)
        else:
            gatt.add(payload, i, devices.index(publisher), rx_ms)
    return _merge(readings.finish(), gatt.decode())


class _ReadingRows:
    """Rows of reading-map messages (and of messages with no valid topic), built as lists."""

    def __init__(self) -> None:
        self.rows: list[Row] = []
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
        rows = self.rows
        append = rows.append
        spans = None
        for i, element in enumerate(elements):
            try:
                append(reading_row(element))
            except Rejected as rejected:
                if is_array:
                    spans = spans if spans is not None else element_spans(payload, fmt)
                    octets = payload[spans[i][0]:spans[i][1]]
                else:
                    octets = payload
                self._reject(message, i, kind_of(element), rejected, octets)
        self.spans.append((message, device, rx_ms, len(elements)))

    def reject_message(self, message: int, device: int, rx_ms: int, payload: bytes | None,
                       rejected: Rejected) -> None:
        self._reject(message, 0, Kind.NONE, rejected, payload or b"")
        self.spans.append((message, device, rx_ms, 1))

    def _reject(self, message: int, element: int, kind: Kind, rejected: Rejected, octets: bytes) -> None:
        self.raw_fingerprints[len(self.rows)] = fnv1a64(octets)
        self.rows.append((0, math.nan, math.nan, math.nan, math.nan, 0, 0, 0, int(kind), int(rejected.reason),
                          0, NO_USER, AUX_ABSENT, math.nan, MEAL_ABSENT))
        self.details[(message, element)] = str(rejected)

    def finish(self) -> Decoded:
        """The rows as columns, fingerprints computed."""
        n = len(self.rows)
        batch = core.empty_batch(n)
        (t, v0, v1, v2, v3, seq, status, flags, kind, reason, unit_in, user, aux0, battery,
         meal) = zip(*self.rows) if n else [()] * len(ROW_FIELDS)
        batch["t"], batch["seq"], batch["status"], batch["flags"] = t, seq, status, flags
        batch["kind"], batch["reason"], batch["unit_in"], batch["user"] = kind, reason, unit_in, user
        v = batch["v"]
        v[:, 0], v[:, 1], v[:, 2], v[:, 3] = v0, v1, v2, v3
        batch["aux"][:, 0] = aux0
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
        for i in np.flatnonzero(batch["reason"] == Reason.NOTNUM):
            self.details[(int(row_message[i]), int(element[i]))] = NOTNUM_DETAIL
        return Decoded(batch, row_message, element, np.array(battery, dtype=np.float64),
                       np.array(meal, dtype=np.uint8), np.full(n, HSEQ_ABSENT, dtype=np.int64), self.details)


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
