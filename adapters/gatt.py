"""GATT record maps (``pmp/v1/hub/{hub_id}/gatt``, DESIGN.md "GATT record map") -> records.

A hub publishes one record map or an array of them, msgpack only. ``GattRecords`` gathers
the records of every GATT message of a batch, checks each map against GATT_KEYS, and decodes
all their values with ONE call of the core's batch decoder (``core.gatt_decode_batch``: the
C decoder, or its twin under PMP_PUREPYTHON=1). Each value yields its records (a CGM value
one per Size-framed record), or one record with reason DECODE / SCHEMA from the decoder.

A record map that fails here yields one row with its reason: SCHEMA (not a map, duplicate,
unknown or missing key, wrong type or range) or TOPIC (``dev`` is not a BLE address);
kind from its uuid when that is a known characteristic, device its meter when ``dev`` is
valid (else the hub), rx the gateway's arrival time, ``hseq`` when that is valid (the hub
needs an ack for quarantined records too), fingerprint FNV-1a 64 of the record's octets.

**Context join.** A glucose measurement context (0x2A34) has no time of its own; it shares
the seq of its glucose measurement (0x2A18). Within one batch, for decoded (reason OK)
records of the same device and seq: the context takes the measurement's time (when the
measurement has one), and the measurement takes the context's meal (0x2A34 Meal field, codes
1-5 = the reading map's MEALS; the context row carries it too). With several of either, the
last in batch order wins. A context whose measurement is not in the batch keeps its time
absent: the core's validation gives it ``rx``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

import core
from core.codes import GATT_ERRORS, UUID_KIND, Flag, GattError, Kind, Reason

from .codec import MEAL_ABSENT, MEALS
from .devices import DeviceIndex
from .topics import is_ble_address
from .wire import MAX_BIN_OCTETS, Format, Rejected, element_spans, fnv1a64, map_of, parse

GATT_KEYS = frozenset({"dev", "uuid", "val", "rx", "tz", "cgm_start", "hseq"})
GATT_REQUIRED = frozenset({"dev", "uuid", "val", "rx", "tz"})

# Integer keys and their inclusive ranges. ``rx`` (ms UTC) is never negative, which keeps
# the core's time arithmetic (rx - 24 h) far from the int64 limits.
GATT_INTEGER_KEYS: dict[str, tuple[int, int]] = {
    "uuid": (0, 0xFFFF),
    "rx": (0, 2**63 - 1),
    "tz": (-(2**15), 2**15 - 1),
    "cgm_start": (-(2**63), 2**63 - 1),
    "hseq": (0, 2**32 - 1),
}
HSEQ_ABSENT = -1

_ABSENT: Any = object()
_MEAL_CODES = np.array(sorted(MEALS.values()), dtype=np.uint8)
_OK = int(Reason.OK)
_GLU, _CONTEXT = int(Kind.GLU), int(Kind.GLU_CONTEXT)
_HAS_TIME = int(Flag.HAS_TIME)


class Record(NamedTuple):
    """One checked GATT record map."""

    dev: str
    uuid: int
    val: bytes
    rx: int  # hub receive time, ms UTC
    tz: int  # meter local clock minus UTC, minutes
    cgm_start: int | None  # CGM session start, ms UTC
    hseq: int  # hub message sequence number, HSEQ_ABSENT when not given


class GattRows(NamedTuple):
    """Rows of the GATT messages of a batch, in no particular order.

    ``batch`` READING_DTYPE; ``message``/``element`` int32 (which message, which record of
    its array); ``hseq`` int64 (HSEQ_ABSENT = -1); ``meal`` uint8 (MEALS code, 0 = absent);
    ``details`` (message, element) -> why a record was rejected.
    """

    batch: np.ndarray
    message: np.ndarray
    element: np.ndarray
    hseq: np.ndarray
    meal: np.ndarray
    details: dict[tuple[int, int], str]


def check_record(element: Any) -> Record:
    """The checked record of one element; raises ``Rejected`` (SCHEMA or TOPIC)."""
    m = map_of(element, "GATT record")
    keys = m.keys()
    if not keys <= GATT_KEYS:
        raise Rejected(Reason.SCHEMA, "unknown key in GATT record", min(keys - GATT_KEYS, key=repr))
    if not GATT_REQUIRED <= keys:
        raise Rejected(Reason.SCHEMA, "missing key in GATT record", min(GATT_REQUIRED - keys))
    dev = m["dev"]
    if not is_ble_address(dev):
        raise Rejected(Reason.TOPIC, "dev must be a BLE address AA:BB:CC:DD:EE:FF", dev)
    val = m["val"]
    if type(val) is not bytes:
        raise Rejected(Reason.SCHEMA, "val must be bin", val)
    return Record(dev, _integer(m, "uuid"), val, _integer(m, "rx"), _integer(m, "tz"),
                  _integer(m, "cgm_start") if "cgm_start" in keys else None,
                  _integer(m, "hseq") if "hseq" in keys else HSEQ_ABSENT)


class GattRecords:
    """The GATT messages of one batch: ``add`` each, then ``decode`` them all at once."""

    def __init__(self, devices: DeviceIndex) -> None:
        self._devices = devices
        self._records: list[Record] = []
        self._where: list[tuple[int, int]] = []  # (message, element) of each record
        self._rejected: list[tuple[int, int, int, int, int, int, int, int]] = []
        self._details: dict[tuple[int, int], str] = {}

    def add(self, payload: bytes, message: int, hub: int, rx_ms: int) -> None:
        """Take the records of one message: ``hub`` its hub's device index, ``rx_ms`` its
        arrival time (ms UTC). Never raises for any payload."""
        try:
            elements, is_array = parse(payload, Format.MSGPACK, max_bin=MAX_BIN_OCTETS)
        except Rejected as rejected:
            self._reject(message, 0, rejected, Kind.NONE, hub, rx_ms, HSEQ_ABSENT, fnv1a64(payload))
            return
        spans = None
        for i, element in enumerate(elements):
            try:
                record = check_record(element)
            except Rejected as rejected:
                if not is_array:
                    octets = payload
                else:
                    spans = spans if spans is not None else element_spans(payload, Format.MSGPACK)
                    octets = payload[spans[i][0]:spans[i][1]]
                kind, device, hseq = self._salvage(element, hub)
                self._reject(message, i, rejected, kind, device, rx_ms, hseq, fnv1a64(octets))
                continue
            self._records.append(record)
            self._where.append((message, i))

    def decode(self) -> GattRows:
        """Decode every record taken so far (one decoder call) and join contexts."""
        parts = [self._decoded(), self._rejected_rows()]
        return GattRows(*(np.concatenate([part[k] for part in parts]) for k in range(5)), self._details)

    def _decoded(self) -> tuple[np.ndarray, ...]:
        records = self._records
        n = len(records)
        contexts = np.zeros(n, dtype=core.GATT_CONTEXT_DTYPE)
        if n:
            devices = self._devices
            dev, uuid, val, rx, tz, cgm_start, hseq = zip(*records)
            contexts["device"] = [devices.index(name) for name in dev]
            contexts["rx"] = rx
            contexts["tz_min"] = tz
            contexts["has_cgm_start"] = [start is not None for start in cgm_start]
            contexts["cgm_start"] = [0 if start is None else start for start in cgm_start]
        else:
            uuid, val, hseq = (), (), ()
        buf, offsets = core.pack_values(val)
        out, value_index, errors = core.gatt_decode_batch(buf, offsets, np.array(uuid, dtype=np.uint16), contexts)
        where = np.array(self._where, dtype=np.int32).reshape(n, 2)
        for i in np.flatnonzero(errors):
            self._details[tuple(int(x) for x in where[i])] = GATT_ERRORS[GattError(int(errors[i]))][1]
        meal = np.full(len(out), MEAL_ABSENT, dtype=np.uint8)
        join_contexts(out, meal)
        return (out, where[value_index, 0], where[value_index, 1],
                np.array(hseq, dtype=np.int64).reshape(n)[value_index], meal)

    def _rejected_rows(self) -> tuple[np.ndarray, ...]:
        rows = self._rejected
        batch = core.empty_batch(len(rows))
        columns = list(zip(*rows)) if rows else [()] * 8
        message, element, kind, device, rx, hseq, reason, fingerprint = columns
        batch["kind"], batch["device"], batch["rx"] = kind, device, rx
        batch["reason"], batch["fingerprint"] = reason, fingerprint
        return (batch, np.array(message, dtype=np.int32), np.array(element, dtype=np.int32),
                np.array(hseq, dtype=np.int64), np.zeros(len(rows), dtype=np.uint8))

    def _reject(self, message: int, element: int, rejected: Rejected, kind: Kind, device: int, rx_ms: int,
                hseq: int, fingerprint: int) -> None:
        self._rejected.append((message, element, int(kind), device, rx_ms, hseq, int(rejected.reason), fingerprint))
        self._details[(message, element)] = str(rejected)

    def _salvage(self, element: Any, hub: int) -> tuple[Kind, int, int]:
        """Kind, device index and hseq of a rejected record, as far as they are valid."""
        if type(element) is not tuple:
            return Kind.NONE, hub, HSEQ_ABSENT
        m = dict(element)
        uuid, dev, hseq = m.get("uuid"), m.get("dev"), m.get("hseq")
        low, high = GATT_INTEGER_KEYS["hseq"]
        return (UUID_KIND.get(uuid, Kind.NONE) if type(uuid) is int else Kind.NONE,
                self._devices.index(dev) if is_ble_address(dev) else hub,
                hseq if type(hseq) is int and low <= hseq <= high else HSEQ_ABSENT)


def join_contexts(records: np.ndarray, meal: np.ndarray) -> None:
    """Join decoded glucose contexts to their measurements in place (module docstring).

    ``records`` READING_DTYPE (``t`` and ``flags`` of contexts updated), ``meal`` uint8
    (set for contexts and their measurements).
    """
    ok = records["reason"] == _OK
    contexts = np.flatnonzero(ok & (records["kind"] == _CONTEXT))
    if not len(contexts):
        return
    measurements = np.flatnonzero(ok & (records["kind"] == _GLU))
    context_meal = records["aux"][contexts, 1]
    context_meal = np.where(np.isin(context_meal, _MEAL_CODES), context_meal, MEAL_ABSENT).astype(np.uint8)
    meal[contexts] = context_meal
    keys = (records["device"].astype(np.int64) << 32) | records["seq"].astype(np.int64)
    has, found = _last_equal(keys[contexts], keys[measurements])
    timed = has.copy()
    timed[has] = (records["flags"][measurements[found]] & _HAS_TIME) != 0
    into, source = contexts[timed], measurements[found[timed[has]]]
    records["t"][into] = records["t"][source]
    records["flags"][into] |= _HAS_TIME
    has, found = _last_equal(keys[measurements], keys[contexts])
    meal[measurements[has]] = context_meal[found]


def _last_equal(wanted: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each key in ``wanted``: whether ``pool`` holds it, and (for those that do) the
    index of its last occurrence in ``pool``."""
    order = np.argsort(pool, kind="stable")
    ordered = pool[order]
    at = np.searchsorted(ordered, wanted, side="right") - 1
    has = at >= 0
    has[has] = ordered[at[has]] == wanted[has]
    return has, order[at[has]]


def _integer(m: dict, key: str) -> int:
    x = m[key]
    low, high = GATT_INTEGER_KEYS[key]
    if type(x) is not int or not low <= x <= high:
        raise Rejected(Reason.SCHEMA, f"{key} must be an integer in [{low}, {high}]", x)
    return x
