"""Encoders for the four GATT characteristics: the octets a BLE meter sends.

The inverse of the core's decoders, for the simulated fleet, the benchmarks and the tests.
Layouts follow the Bluetooth SIG GATT Specification Supplement; multi-octet fields are
little-endian; measurement values are IEEE-11073 16-bit SFLOATs.
"""

from __future__ import annotations

import datetime
import struct

from core.reference.gatt import crc16_mcrf4xx

SFLOAT_NAN = 0x07FF
SFLOAT_NRES = 0x0800
SFLOAT_PLUS_INF = 0x07FE
SFLOAT_MINUS_INF = 0x0802


def sfloat(value: float, exponent: int = 0) -> int:
    """The 16-bit SFLOAT of ``value`` as mantissa * 10**exponent (mantissa rounded)."""
    mantissa = round(value / 10.0**exponent) if exponent >= 0 else round(value * 10.0 ** (-exponent))
    if not -2046 <= mantissa <= 2045 or not -8 <= exponent <= 7:
        raise ValueError(f"{value} does not fit an SFLOAT with exponent {exponent}")
    return ((exponent & 0xF) << 12) | (mantissa & 0x0FFF)


def date_time(when: datetime.datetime) -> bytes:
    """Date Time (0x2A08): year u16, month, day, hours, minutes, seconds."""
    return struct.pack("<HBBBBB", when.year, when.month, when.day, when.hour, when.minute, when.second)


def blood_pressure(sys_raw: int, dia_raw: int, map_raw: int, *, kpa: bool = False,
                   when: datetime.datetime | None = None, pulse_raw: int | None = None,
                   user: int | None = None, status: int | None = None) -> bytes:
    """Blood Pressure Measurement (0x2A35) from SFLOAT fields (see ``sfloat``)."""
    flags = (kpa << 0) | ((when is not None) << 1) | ((pulse_raw is not None) << 2) | ((user is not None) << 3) \
        | ((status is not None) << 4)
    out = struct.pack("<BHHH", flags, sys_raw, dia_raw, map_raw)
    if when is not None:
        out += date_time(when)
    if pulse_raw is not None:
        out += struct.pack("<H", pulse_raw)
    if user is not None:
        out += struct.pack("<B", user)
    if status is not None:
        out += struct.pack("<H", status)
    return out


def glucose(seq: int, base_time: datetime.datetime, *, offset_min: int | None = None,
            concentration_raw: int | None = None, mol_per_l: bool = False, sample_type: int = 1,
            location: int = 1, status: int | None = None, context_follows: bool = False) -> bytes:
    """Glucose Measurement (0x2A18); concentration in kg/L (or mol/L) as an SFLOAT."""
    flags = ((offset_min is not None) << 0) | ((concentration_raw is not None) << 1) | (mol_per_l << 2) \
        | ((status is not None) << 3) | (context_follows << 4)
    out = struct.pack("<BH", flags, seq) + date_time(base_time)
    if offset_min is not None:
        out += struct.pack("<h", offset_min)
    if concentration_raw is not None:
        out += struct.pack("<HB", concentration_raw, (location << 4) | sample_type)
    if status is not None:
        out += struct.pack("<H", status)
    return out


def glucose_context(seq: int, *, carbohydrate: tuple[int, int] | None = None, meal: int | None = None,
                    tester_health: tuple[int, int] | None = None, exercise: tuple[int, int] | None = None,
                    medication: tuple[int, int, bool] | None = None, hba1c_raw: int | None = None) -> bytes:
    """Glucose Measurement Context (0x2A34).

    ``carbohydrate`` = (id, kg SFLOAT), ``tester_health`` = (tester, health),
    ``exercise`` = (duration s, intensity %), ``medication`` = (id, SFLOAT, True if litres).
    """
    flags = ((carbohydrate is not None) << 0) | ((meal is not None) << 1) | ((tester_health is not None) << 2) \
        | ((exercise is not None) << 3) | ((medication is not None) << 4) \
        | ((medication is not None and medication[2]) << 5) | ((hba1c_raw is not None) << 6)
    out = struct.pack("<BH", flags, seq)
    if carbohydrate is not None:
        out += struct.pack("<BH", *carbohydrate)
    if meal is not None:
        out += struct.pack("<B", meal)
    if tester_health is not None:
        out += struct.pack("<B", (tester_health[1] << 4) | tester_health[0])
    if exercise is not None:
        out += struct.pack("<HB", *exercise)
    if medication is not None:
        out += struct.pack("<BH", medication[0], medication[1])
    if hba1c_raw is not None:
        out += struct.pack("<H", hba1c_raw)
    return out


def cgm_record(concentration_raw: int, offset_min: int, *, trend_raw: int | None = None,
               quality_raw: int | None = None, status: int | None = None, cal_temp: int | None = None,
               warning: int | None = None, crc: bool = False) -> bytes:
    """One CGM Measurement (0x2AA7) record, framed by its Size octet; mg/dL SFLOATs.

    Several records laid end to end make one multi-record value.
    """
    flags = ((trend_raw is not None) << 0) | ((quality_raw is not None) << 1) | ((warning is not None) << 5) \
        | ((cal_temp is not None) << 6) | ((status is not None) << 7)
    body = struct.pack("<BHH", flags, concentration_raw, offset_min)
    for octet in (status, cal_temp, warning):
        if octet is not None:
            body += struct.pack("<B", octet)
    if trend_raw is not None:
        body += struct.pack("<H", trend_raw)
    if quality_raw is not None:
        body += struct.pack("<H", quality_raw)
    record = bytes([1 + len(body) + (2 if crc else 0)]) + body
    return record + struct.pack("<H", crc16_mcrf4xx(record)) if crc else record
