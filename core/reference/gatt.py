"""Pure-Python twin of the C GATT decoders (core/gatt.c), written plainly and separately.

Each characteristic is a table of fields in wire order (GATT Specification Supplement,
least significant octet first), each gated by a flag bit or always present. Decoding is
two steps: read the raw fields the flags announce (a missing octet is TRUNCATED), then
interpret them into a record (impossible dates are DATE). Records are READING_DTYPE rows,
bit-for-bit equal to the C decoder's: units mmHg, mmol/L, bpm, ms UTC; NaN = absent.
"""

from __future__ import annotations

import calendar
import math

import numpy as np

from ..codes import AUX_ABSENT, NO_PATIENT, NO_USER, UUID_KIND, Flag, GattError, Kind, Reason, Unit
from ..layout import GATT_CONTEXT_DTYPE, READING_DTYPE, empty_batch, gatt_context
from .fingerprint import fnv1a64

# (field name, wire type, flag bit that announces it or None for always present)
BPM_FIELDS = [
    ("flags", "u8", None),
    ("systolic", "sfloat", None),
    ("diastolic", "sfloat", None),
    ("map", "sfloat", None),
    ("time_stamp", "datetime", 0x02),
    ("pulse", "sfloat", 0x04),
    ("user", "u8", 0x08),
    ("status", "u16", 0x10),
]
GLUCOSE_FIELDS = [
    ("flags", "u8", None),
    ("seq", "u16", None),
    ("base_time", "datetime", None),
    ("time_offset", "s16", 0x01),
    ("concentration", "sfloat", 0x02),
    ("type_location", "u8", 0x02),
    ("sensor_status", "u16", 0x08),
]
CONTEXT_FIELDS = [
    ("flags", "u8", None),
    ("seq", "u16", None),
    ("extended_flags", "u8", 0x80),
    ("carbohydrate_id", "u8", 0x01),
    ("carbohydrate", "sfloat", 0x01),
    ("meal", "u8", 0x02),
    ("tester_health", "u8", 0x04),
    ("exercise_duration", "u16", 0x08),
    ("exercise_intensity", "u8", 0x08),
    ("medication_id", "u8", 0x10),
    ("medication", "sfloat", 0x10),
    ("hba1c", "sfloat", 0x40),
]
# One CGM record (the Size octet frames it); the annunciation octets come Status, Cal/Temp,
# Warning (least significant first), and make one 24-bit status in that order.
CGM_FIELDS = [
    ("size", "u8", None),
    ("flags", "u8", None),
    ("glucose", "sfloat", None),
    ("time_offset", "u16", None),
    ("status_octet", "u8", 0x80),
    ("cal_temp_octet", "u8", 0x40),
    ("warning_octet", "u8", 0x20),
    ("trend", "sfloat", 0x01),
    ("quality", "sfloat", 0x02),
]
WIRE_SIZE = {"u8": 1, "u16": 2, "s16": 2, "sfloat": 2, "datetime": 7}
CGM_CRC_SIZE = 2

SFLOAT_SPECIALS = {0x07FF: "NaN", 0x0800: "NRes", 0x07FE: "+INF", 0x0802: "-INF", 0x0801: "reserved"}
GLUCOSE_RANGE_OF_SPECIAL = {0x0802: Flag.RANGE_LO, 0x07FE: Flag.RANGE_HI}

KPA_TO_MMHG = 7.50062
MG_PER_DL_PER_MMOL_PER_L = 18.016
MS_PER_MINUTE = 60_000

BPM_ARTIFACT_BITS = {0: "body movement", 1: "cuff too loose", 5: "improper measurement position"}
GLUCOSE_STATUS_FLAGS = {
    0: Flag.BATTERY_LOW,
    1: Flag.DEVICE_FAULT,   # sensor malfunction or faulting
    5: Flag.RANGE_HI,       # result higher than the device can process
    6: Flag.RANGE_LO,       # result lower than the device can process
    10: Flag.DEVICE_FAULT,  # general device fault
    11: Flag.TIME_FAULT,
}
CGM_STATUS_FLAGS = {
    1: Flag.BATTERY_LOW,
    3: Flag.DEVICE_FAULT,   # sensor malfunction
    5: Flag.DEVICE_FAULT,   # general device fault
    22: Flag.RANGE_LO,      # result lower than the device can process
    23: Flag.RANGE_HI,      # result higher than the device can process
}
GLUCOSE_TYPE_CONTROL = 10
GLUCOSE_LOCATION_CONTROL = 4


class _Failure(Exception):
    def __init__(self, error: GattError):
        super().__init__(error.name)
        self.error = error


def sfloat_value(raw: int) -> float:
    """IEEE-11073 SFLOAT -> float; the five specials are NaN (absent)."""
    if raw in SFLOAT_SPECIALS:
        return math.nan
    mantissa = raw & 0x0FFF
    if mantissa >= 0x0800:
        mantissa -= 0x1000
    exponent = raw >> 12
    if exponent >= 8:
        exponent -= 16
    if exponent >= 0:
        return mantissa * 10.0**exponent
    return mantissa / 10.0 ** (-exponent)


def read_fields(table: list[tuple[str, str, int | None]], value: bytes) -> dict:
    """Raw fields the flags announce, in wire order; a missing octet is TRUNCATED."""
    fields: dict = {}
    at = 0
    for name, wire, bit in table:
        if bit is not None and not fields["flags"] & bit:
            continue
        size = WIRE_SIZE[wire]
        chunk = value[at : at + size]
        if len(chunk) < size:
            raise _Failure(GattError.TRUNCATED)
        if wire == "datetime":
            fields[name] = (int.from_bytes(chunk[:2], "little"), *chunk[2:])
        else:
            fields[name] = int.from_bytes(chunk, "little", signed=wire == "s16")
        at += size
    return fields


def local_ms(date_time: tuple[int, ...]) -> int | None:
    """A Date Time read as if it were UTC, in ms; None when year, month or day is 0."""
    year, month, day, hour, minute, second = date_time
    if year == 0 or month == 0 or day == 0:
        return None
    if not 1582 <= year <= 9999 or month > 12 or hour > 23 or minute > 59 or second > 59:
        raise _Failure(GattError.DATE)
    if day > calendar.monthrange(year, month)[1]:
        raise _Failure(GattError.DATE)
    return calendar.timegm((year, month, day, hour, minute, second)) * 1000


def fingerprint(uuid: int, octets: bytes) -> int:
    """FNV-1a 64 over the uuid (2 octets, little-endian) and the octets."""
    return fnv1a64(uuid.to_bytes(2, "little") + octets)


def crc16_mcrf4xx(octets: bytes) -> int:
    """CRC-16/MCRF4XX: polynomial 0x1021 bit-reflected (0x8408), seed 0xFFFF, no final xor."""
    crc = 0xFFFF
    for octet in octets:
        crc ^= octet
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0x8408
            else:
                crc >>= 1
    return crc


def flags_from_bits(status: int, table: dict[int, Flag]) -> int:
    result = 0
    for bit, flag in table.items():
        if status >> bit & 1:
            result |= flag
    return result


def new_record(kind: Kind, ctx: dict) -> dict:
    return {
        "kind": kind,
        "t": 0,
        "rx": ctx["rx"],
        "device": ctx["device"],
        "v": [math.nan] * 4,
        "aux": {},
        "flags": 0,
        "seq": 0,
        "status": 0,
        "unit_in": Unit.NONE,
        "user": NO_USER,
        "reason": Reason.OK,
        "fingerprint": 0,
    }


def blood_pressure(value: bytes, ctx: dict) -> list[dict]:
    f = read_fields(BPM_FIELDS, value)
    rec = new_record(Kind.BP, ctx)
    pressures = [sfloat_value(f["systolic"]), sfloat_value(f["diastolic"]), sfloat_value(f["map"])]
    if f["flags"] & 0x01:
        rec["unit_in"] = Unit.KPA
        pressures = [p if math.isnan(p) else p * KPA_TO_MMHG for p in pressures]
    else:
        rec["unit_in"] = Unit.MMHG
    rec["v"][0:3] = pressures
    if "time_stamp" in f:
        ms = local_ms(f["time_stamp"])
        if ms is not None:
            rec["t"] = ms - ctx["tz_min"] * MS_PER_MINUTE
            rec["flags"] |= Flag.HAS_TIME
    if "pulse" in f:
        rec["v"][3] = sfloat_value(f["pulse"])
    if "user" in f:
        rec["user"] = f["user"]
    if "status" in f:
        rec["status"] = f["status"]
        if any(f["status"] >> bit & 1 for bit in BPM_ARTIFACT_BITS):
            rec["flags"] |= Flag.ARTIFACT
    rec["fingerprint"] = fingerprint(0x2A35, value)
    return [rec]


def glucose(value: bytes, ctx: dict) -> list[dict]:
    f = read_fields(GLUCOSE_FIELDS, value)
    rec = new_record(Kind.GLU, ctx)
    rec["seq"] = f["seq"]
    rec["flags"] |= Flag.HAS_SEQ
    ms = local_ms(f["base_time"])
    if ms is not None:
        rec["t"] = ms + f.get("time_offset", 0) * MS_PER_MINUTE - ctx["tz_min"] * MS_PER_MINUTE
        rec["flags"] |= Flag.HAS_TIME
    if "concentration" in f:
        raw = f["concentration"]
        x = sfloat_value(raw)
        rec["flags"] |= GLUCOSE_RANGE_OF_SPECIAL.get(raw, 0)
        if f["flags"] & 0x04:
            rec["unit_in"] = Unit.MOL_PER_L
            rec["v"][0] = x if math.isnan(x) else x * 1000.0
        else:
            rec["unit_in"] = Unit.KG_PER_L
            rec["v"][0] = x if math.isnan(x) else (x * 100000.0) / MG_PER_DL_PER_MMOL_PER_L
        sample_type = f["type_location"] % 16
        location = f["type_location"] // 16
        rec["aux"] = {0: sample_type, 1: location}
        if sample_type == GLUCOSE_TYPE_CONTROL or location == GLUCOSE_LOCATION_CONTROL:
            rec["flags"] |= Flag.CONTROL
    if "sensor_status" in f:
        rec["status"] = f["sensor_status"]
        rec["flags"] |= flags_from_bits(f["sensor_status"], GLUCOSE_STATUS_FLAGS)
    if f["flags"] & 0x10:
        rec["flags"] |= Flag.CONTEXT_FOLLOWS
    rec["fingerprint"] = fingerprint(0x2A18, value)
    return [rec]


def glucose_context(value: bytes, ctx: dict) -> list[dict]:
    f = read_fields(CONTEXT_FIELDS, value)
    rec = new_record(Kind.GLU_CONTEXT, ctx)
    rec["seq"] = f["seq"]
    rec["flags"] |= Flag.HAS_SEQ
    if "carbohydrate" in f:
        rec["aux"][0] = f["carbohydrate_id"]
        rec["v"][0] = sfloat_value(f["carbohydrate"])
    if "meal" in f:
        rec["aux"][1] = f["meal"]
    if "tester_health" in f:
        rec["aux"][2] = f["tester_health"] % 16
        rec["aux"][3] = f["tester_health"] // 16
    if "exercise_duration" in f:
        rec["v"][3] = float(f["exercise_duration"])
        rec["aux"][4] = f["exercise_intensity"]
    if "medication" in f:
        rec["aux"][5] = f["medication_id"]
        rec["v"][1] = sfloat_value(f["medication"])
        rec["unit_in"] = Unit.L if f["flags"] & 0x20 else Unit.KG
    if "hba1c" in f:
        rec["v"][2] = sfloat_value(f["hba1c"])
    rec["fingerprint"] = fingerprint(0x2A34, value)
    return [rec]


def cgm_record_length(flags: int) -> int:
    """Octets a CGM record's flags announce, E2E-CRC not counted."""
    return sum(WIRE_SIZE[wire] for _, wire, bit in CGM_FIELDS if bit is None or flags & bit)


def cgm(value: bytes, ctx: dict) -> list[dict]:
    records = []
    at = 0
    while at < len(value):
        if len(value) - at < 2:
            raise _Failure(GattError.TRUNCATED)
        size, flags = value[at], value[at + 1]
        plain = cgm_record_length(flags)
        if size not in (plain, plain + CGM_CRC_SIZE):
            raise _Failure(GattError.CGM_SIZE)
        if at + size > len(value):
            raise _Failure(GattError.TRUNCATED)
        octets = value[at : at + size]
        if size == plain + CGM_CRC_SIZE:
            if crc16_mcrf4xx(octets[:plain]) != int.from_bytes(octets[plain:], "little"):
                raise _Failure(GattError.CGM_CRC)
        records.append(cgm_one(octets, ctx))
        at += size
    return records


def cgm_one(octets: bytes, ctx: dict) -> dict:
    f = read_fields(CGM_FIELDS, octets)
    rec = new_record(Kind.CGM, ctx)
    rec["unit_in"] = Unit.MG_PER_DL
    x = sfloat_value(f["glucose"])
    rec["v"][0] = x if math.isnan(x) else x / MG_PER_DL_PER_MMOL_PER_L
    rec["flags"] |= GLUCOSE_RANGE_OF_SPECIAL.get(f["glucose"], 0)
    rec["v"][3] = float(f["time_offset"])
    if ctx["has_cgm_start"]:
        t = ctx["cgm_start"] + f["time_offset"] * MS_PER_MINUTE
        rec["t"] = (t + 2**63) % 2**64 - 2**63
        rec["flags"] |= Flag.HAS_TIME
    status = f.get("status_octet", 0) | f.get("cal_temp_octet", 0) << 8 | f.get("warning_octet", 0) << 16
    rec["status"] = status
    rec["flags"] |= flags_from_bits(status, CGM_STATUS_FLAGS)
    if "trend" in f:
        trend = sfloat_value(f["trend"])
        rec["v"][1] = trend if math.isnan(trend) else trend / MG_PER_DL_PER_MMOL_PER_L
    if "quality" in f:
        rec["v"][2] = sfloat_value(f["quality"])
    rec["fingerprint"] = fingerprint(0x2AA7, octets)
    return rec


DECODERS = {0x2A35: blood_pressure, 0x2A18: glucose, 0x2A34: glucose_context, 0x2AA7: cgm}


def decode_value(uuid: int, value: bytes, ctx: dict) -> tuple[list[dict], GattError]:
    """Records of one value as dicts, and its error (records empty unless OK)."""
    if uuid not in DECODERS:
        return [], GattError.UUID
    if len(value) == 0:
        return [], GattError.EMPTY
    try:
        return DECODERS[uuid](value, ctx), GattError.OK
    except _Failure as failure:
        return [], failure.error


def failed_record(uuid: int, value: bytes, ctx: dict, error: GattError) -> dict:
    rec = new_record(UUID_KIND.get(uuid, Kind.NONE), ctx)
    rec["reason"] = Reason.SCHEMA if error == GattError.UUID else Reason.DECODE
    rec["fingerprint"] = fingerprint(uuid, value)
    return rec


def to_array(records: list[dict]) -> np.ndarray:
    out = empty_batch(len(records))
    for i, rec in enumerate(records):
        row = out[i]
        for name in ("t", "rx", "fingerprint", "device", "seq", "status", "flags", "kind", "reason",
                     "unit_in", "user"):
            row[name] = rec[name]
        row["v"] = rec["v"]
        row["patient"] = NO_PATIENT
        aux = [AUX_ABSENT] * 10
        for slot, octet in rec["aux"].items():
            aux[slot] = octet
        row["aux"] = aux
    return out


def context_dict(ctx: np.void) -> dict:
    return {name: int(ctx[name]) for name in GATT_CONTEXT_DTYPE.names}


def decode(
    uuid: int,
    value: bytes,
    *,
    device: int = 0,
    rx: int = 0,
    tz_min: int = 0,
    cgm_start: int | None = None,
) -> tuple[np.ndarray, GattError]:
    """Twin of ``core.gatt.decode``: records of one value and its GattError."""
    if not 0 <= uuid <= 0xFFFF:
        return np.empty(0, dtype=READING_DTYPE), GattError.UUID
    ctx = gatt_context(device=device, rx=rx, tz_min=tz_min, cgm_start=cgm_start)
    records, error = decode_value(uuid, bytes(value), context_dict(ctx[0]))
    return to_array(records), error


def decode_batch(
    buf: bytes, offsets: np.ndarray, uuids: np.ndarray, contexts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Twin of ``core.gatt.decode_batch``: (records, value_index int32, errors uint8)."""
    buf = bytes(buf)
    offsets = [int(o) for o in np.asarray(offsets, dtype=np.int64)]
    uuids = [int(u) for u in np.asarray(uuids, dtype=np.uint16)]
    n = len(uuids)
    if len(offsets) != n + 1:
        raise ValueError(f"offsets must have len(uuids) + 1 = {n + 1} entries, not {len(offsets)}")
    if len(contexts) != n:
        raise ValueError(f"contexts must have {n} entries, not {len(contexts)}")
    if contexts.dtype != GATT_CONTEXT_DTYPE:
        raise TypeError(f"contexts must be GATT_CONTEXT_DTYPE, not {contexts.dtype}")
    if offsets[0] < 0 or offsets[-1] > len(buf) or any(b < a for a, b in zip(offsets, offsets[1:])):
        raise ValueError("offsets must start at >= 0, never decrease and end within buf")
    records: list[dict] = []
    value_index: list[int] = []
    errors: list[int] = []
    for i, uuid in enumerate(uuids):
        value = buf[offsets[i] : offsets[i + 1]]
        ctx = context_dict(contexts[i])
        decoded, error = decode_value(uuid, value, ctx)
        if error != GattError.OK:
            decoded = [failed_record(uuid, value, ctx, error)]
        records.extend(decoded)
        value_index.extend([i] * len(decoded))
        errors.append(error)
    return to_array(records), np.array(value_index, dtype=np.int32), np.array(errors, dtype=np.uint8)
