"""Every code the core speaks, in one place: reasons, kinds, flags, units, GATT errors.

The numbers are fixed by include/pmp.h; core/layout.py checks at import that each value
here equals the C enum of the same name, so the tables can never drift from the header.
"""

from __future__ import annotations

import enum


class Reason(enum.IntEnum):
    """Why a reading is not stored as clinical data (DESIGN.md); OK means stored."""

    OK = 0
    DECODE = 1
    SCHEMA = 2
    TOPIC = 3
    RANGE = 4
    NOTNUM = 5
    FUTURE = 6
    STALE = 7
    UNBOUND = 8
    DUPLICATE = 9
    CONFLICT = 10


class Kind(enum.IntEnum):
    """What a record measures; the meaning of v[0..3] and aux per kind is in pmp.h."""

    NONE = 0
    BP = 1
    GLU = 2
    CGM = 3
    GLU_CONTEXT = 4


class Flag(enum.IntFlag):
    """Bits of a record's flags column."""

    HAS_TIME = 0x0001
    HAS_SEQ = 0x0002
    RANGE_LO = 0x0004
    RANGE_HI = 0x0008
    ARTIFACT = 0x0010
    CONTROL = 0x0020
    TIME_FAULT = 0x0040
    CONTEXT_FOLLOWS = 0x0080
    T_FROM_RX = 0x0100
    LATE = 0x0200
    BATTERY_LOW = 0x0400
    DEVICE_FAULT = 0x0800


class Unit(enum.IntEnum):
    """Unit a value arrived in, kept for audit (values are converted at decoding)."""

    NONE = 0
    MMHG = 1
    KPA = 2
    KG_PER_L = 3
    MOL_PER_L = 4
    MMOL_PER_L = 5
    MG_PER_DL = 6
    KG = 7
    L = 8


UNIT_NAMES: dict[Unit, str | None] = {
    Unit.NONE: None,
    Unit.MMHG: "mmHg",
    Unit.KPA: "kPa",
    Unit.KG_PER_L: "kg/L",
    Unit.MOL_PER_L: "mol/L",
    Unit.MMOL_PER_L: "mmol/L",
    Unit.MG_PER_DL: "mg/dL",
    Unit.KG: "kg",
    Unit.L: "L",
}


class GattError(enum.IntEnum):
    """Why a GATT characteristic value could not be decoded."""

    OK = 0
    EMPTY = 1
    TRUNCATED = 2
    DATE = 3
    CGM_SIZE = 4
    CGM_CRC = 5
    UUID = 6
    CAPACITY = 7


# GATT error -> (reason code, text for operators). UUID is a schema fault of the hub's
# record; everything else is an undecodable value.
GATT_ERRORS: dict[GattError, tuple[Reason, str]] = {
    GattError.OK: (Reason.OK, "decoded"),
    GattError.EMPTY: (Reason.DECODE, "empty value"),
    GattError.TRUNCATED: (Reason.DECODE, "value ends before a field its flags announce"),
    GattError.DATE: (Reason.DECODE, "impossible date or time"),
    GattError.CGM_SIZE: (Reason.DECODE, "CGM record size fits neither its flags nor flags + E2E-CRC"),
    GattError.CGM_CRC: (Reason.DECODE, "CGM record E2E-CRC mismatch"),
    GattError.UUID: (Reason.SCHEMA, "characteristic not decoded by this gateway"),
    GattError.CAPACITY: (Reason.DECODE, "output array too small"),
}

# Characteristic UUIDs the decoder knows (Bluetooth SIG assigned numbers).
UUID_BLOOD_PRESSURE_MEASUREMENT = 0x2A35
UUID_GLUCOSE_MEASUREMENT = 0x2A18
UUID_GLUCOSE_MEASUREMENT_CONTEXT = 0x2A34
UUID_CGM_MEASUREMENT = 0x2AA7

UUID_KIND: dict[int, Kind] = {
    UUID_BLOOD_PRESSURE_MEASUREMENT: Kind.BP,
    UUID_GLUCOSE_MEASUREMENT: Kind.GLU,
    UUID_GLUCOSE_MEASUREMENT_CONTEXT: Kind.GLU_CONTEXT,
    UUID_CGM_MEASUREMENT: Kind.CGM,
}

NO_USER = 0xFF
AUX_ABSENT = 0xFF
NO_PATIENT = -1

# The C prefix of each table above, for the import-time check in core/layout.py.
C_PREFIXES: dict[type[enum.IntEnum] | type[enum.IntFlag], str] = {
    Reason: "PMP_R_",
    Kind: "PMP_K_",
    Flag: "PMP_F_",
    Unit: "PMP_U_",
    GattError: "PMP_E_",
}
