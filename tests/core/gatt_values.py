"""Builders of GATT characteristic values for the decoder tests, from the GATT Specification
Supplement field tables: hand-built examples, and random values driven by any integer
source (a hypothesis draw or a seeded ``random.Random``), so the differential tests and the
sanitizer fuzz share one generator.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable

from core.reference.gatt import crc16_mcrf4xx

BPM, GLUCOSE, CONTEXT, CGM = 0x2A35, 0x2A18, 0x2A34, 0x2AA7
KNOWN_UUIDS = (BPM, GLUCOSE, CONTEXT, CGM)
SFLOAT_SPECIALS = (0x07FF, 0x0800, 0x07FE, 0x0802, 0x0801)
NAN, NRES, PLUS_INF, MINUS_INF, RESERVED = SFLOAT_SPECIALS

# pick(lo, hi) -> an int in [lo, hi]
Pick = Callable[[int, int], int]


def u16(x: int) -> bytes:
    return (x & 0xFFFF).to_bytes(2, "little")


def sf(mantissa: int, exponent: int = 0) -> bytes:
    """SFLOAT octets of mantissa * 10**exponent (4-bit exponent, 12-bit mantissa)."""
    assert -2048 <= mantissa <= 2047 and -8 <= exponent <= 7
    return u16((exponent & 0xF) << 12 | (mantissa & 0xFFF))


def date_time(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> bytes:
    return u16(year) + bytes([month, day, hour, minute, second])


def bpm(systolic: bytes = sf(121), diastolic: bytes = sf(80), mean: bytes = sf(93), *, kpa: bool = False,
        time: bytes | None = None, pulse: bytes | None = None, user: int | None = None,
        status: int | None = None) -> bytes:
    flags = kpa * 0x01 | (time is not None) * 0x02 | (pulse is not None) * 0x04
    flags |= (user is not None) * 0x08 | (status is not None) * 0x10
    out = bytes([flags]) + systolic + diastolic + mean
    out += (time or b"") + (pulse or b"")
    out += bytes([user]) if user is not None else b""
    return out + (u16(status) if status is not None else b"")


def glucose(seq: int = 1, base_time: bytes = date_time(2024, 2, 29, 7, 45, 10), *, offset: int | None = None,
            concentration: bytes | None = None, mol: bool = False, sample_type: int = 1, location: int = 1,
            status: int | None = None, context_follows: bool = False) -> bytes:
    flags = (offset is not None) * 0x01 | (concentration is not None) * 0x02 | mol * 0x04
    flags |= (status is not None) * 0x08 | context_follows * 0x10
    out = bytes([flags]) + u16(seq) + base_time
    out += u16(offset) if offset is not None else b""
    if concentration is not None:
        out += concentration + bytes([location << 4 | sample_type])
    return out + (u16(status) if status is not None else b"")


def context(seq: int = 1, *, extended: int | None = None, carbohydrate: tuple[int, bytes] | None = None,
            meal: int | None = None, tester: int = 1, health: int | None = None,
            exercise: tuple[int, int] | None = None, medication: tuple[int, bytes] | None = None,
            liters: bool = False, hba1c: bytes | None = None) -> bytes:
    flags = (carbohydrate is not None) * 0x01 | (meal is not None) * 0x02 | (health is not None) * 0x04
    flags |= (exercise is not None) * 0x08 | (medication is not None) * 0x10 | liters * 0x20
    flags |= (hba1c is not None) * 0x40 | (extended is not None) * 0x80
    out = bytes([flags]) + u16(seq)
    out += bytes([extended]) if extended is not None else b""
    out += bytes([carbohydrate[0]]) + carbohydrate[1] if carbohydrate else b""
    out += bytes([meal]) if meal is not None else b""
    out += bytes([health << 4 | tester]) if health is not None else b""
    out += u16(exercise[0]) + bytes([exercise[1]]) if exercise else b""
    out += bytes([medication[0]]) + medication[1] if medication else b""
    return out + (hba1c or b"")


def cgm(glucose_mgdl: bytes = sf(100), offset_min: int = 5, *, status: int | None = None,
        cal_temp: int | None = None, warning: int | None = None, trend: bytes | None = None,
        quality: bytes | None = None, crc: bool = False, reserved_flags: int = 0) -> bytes:
    """One CGM record, its Size octet set right (with the E2E-CRC when crc)."""
    flags = (trend is not None) * 0x01 | (quality is not None) * 0x02 | (warning is not None) * 0x20
    flags |= (cal_temp is not None) * 0x40 | (status is not None) * 0x80 | reserved_flags
    body = bytes([flags]) + glucose_mgdl + u16(offset_min)
    for octet in (status, cal_temp, warning):
        body += bytes([octet]) if octet is not None else b""
    body += (trend or b"") + (quality or b"")
    record = bytes([1 + len(body) + 2 * crc]) + body
    return record + u16(crc16_mcrf4xx(record)) if crc else record


# ---- random values ------------------------------------------------------------------------


def random_sfloat(pick: Pick) -> bytes:
    if pick(0, 7) == 0:
        return u16(SFLOAT_SPECIALS[pick(0, len(SFLOAT_SPECIALS) - 1)])
    return u16(pick(0, 0xFFFF))


def random_date_time(pick: Pick) -> bytes:
    kind = pick(0, 7)
    if kind == 0:
        return bytes(pick(0, 255) for _ in range(7))
    if kind == 1:
        return date_time(pick(0, 1) * pick(0, 9999), pick(0, 1) * pick(0, 12), pick(0, 1) * pick(0, 31))
    year, month = pick(1582, 9999) if kind == 2 else pick(2000, 2040), pick(1, 12)
    day = pick(1, calendar.monthrange(year, month)[1])
    return date_time(year, month, day, pick(0, 23), pick(0, 59), pick(0, 59))


def random_octets(pick: Pick, n: int) -> bytes:
    return bytes(pick(0, 255) for _ in range(n))


def random_value(uuid: int, pick: Pick) -> bytes:
    """A well-formed value of a known characteristic: random flags (RFU bits too), every
    announced field, sometimes trailing octets (non-CGM) or several records (CGM)."""
    if uuid == CGM:
        return b"".join(random_cgm_record(pick) for _ in range(pick(1, 4)))
    flags = pick(0, 255)
    if uuid == BPM:
        out = bytes([flags]) + random_sfloat(pick) + random_sfloat(pick) + random_sfloat(pick)
        out += random_date_time(pick) if flags & 0x02 else b""
        out += random_sfloat(pick) if flags & 0x04 else b""
        out += random_octets(pick, 1) if flags & 0x08 else b""
        out += random_octets(pick, 2) if flags & 0x10 else b""
    elif uuid == GLUCOSE:
        out = bytes([flags]) + random_octets(pick, 2) + random_date_time(pick)
        out += random_octets(pick, 2) if flags & 0x01 else b""
        out += random_sfloat(pick) + random_octets(pick, 1) if flags & 0x02 else b""
        out += random_octets(pick, 2) if flags & 0x08 else b""
    else:
        out = bytes([flags]) + random_octets(pick, 2)
        out += random_octets(pick, 1) if flags & 0x80 else b""
        out += random_octets(pick, 1) + random_sfloat(pick) if flags & 0x01 else b""
        out += random_octets(pick, 1) if flags & 0x02 else b""
        out += random_octets(pick, 1) if flags & 0x04 else b""
        out += random_octets(pick, 3) if flags & 0x08 else b""
        out += random_octets(pick, 1) + random_sfloat(pick) if flags & 0x10 else b""
        out += random_sfloat(pick) if flags & 0x40 else b""
    return out + random_octets(pick, pick(0, 3) * pick(0, 1))


def random_cgm_record(pick: Pick) -> bytes:
    flags = pick(0, 255)
    body = bytes([flags]) + random_sfloat(pick) + random_octets(pick, 2)
    body += random_octets(pick, bin(flags & 0xE0).count("1"))
    body += random_sfloat(pick) if flags & 0x01 else b""
    body += random_sfloat(pick) if flags & 0x02 else b""
    crc = pick(0, 1)
    record = bytes([1 + len(body) + 2 * crc]) + body
    return record + u16(crc16_mcrf4xx(record)) if crc else record


def mutate(value: bytes, pick: Pick) -> bytes:
    """One to three random edits: overwrite, drop, insert an octet, or cut the value."""
    out = bytearray(value)
    for _ in range(pick(1, 3)):
        op = pick(0, 3)
        at = pick(0, max(len(out) - 1, 0))
        if op == 0 and out:
            out[at] = pick(0, 255)
        elif op == 1 and out:
            del out[at]
        elif op == 2:
            out.insert(at, pick(0, 255))
        else:
            del out[pick(0, len(out)):]
    return bytes(out)
