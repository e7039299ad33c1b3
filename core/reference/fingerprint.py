"""Pure-Python twin of core/fingerprint.py: struct.pack the octets, FNV-1a them."""

from __future__ import annotations

import math
import struct

import numpy as np

from ..fingerprint import CANONICAL_NAN_BITS, FINGERPRINT_FLAGS, FNV_OFFSET_BASIS, FNV_PRIME


def _value_octets(x: float) -> bytes:
    if math.isnan(x):
        return CANONICAL_NAN_BITS.to_bytes(8, "little")
    return struct.pack("<d", x)


def fnv1a64(data: bytes) -> int:
    """FNV-1a 64 of ``data``."""
    h = FNV_OFFSET_BASIS
    for octet in data:
        h = ((h ^ octet) * FNV_PRIME) % 2**64
    return h


def fingerprint_readings(kind: np.ndarray, flags: np.ndarray, user: np.ndarray, t: np.ndarray, v: np.ndarray,
                         out: np.ndarray) -> None:
    """Write the fingerprint of each reading into ``out``; see core.fingerprint."""
    for i in range(len(kind)):
        octets = bytes([int(kind[i]), int(user[i]), int(flags[i]) & FINGERPRINT_FLAGS, 0])
        octets += struct.pack("<q", int(t[i]))
        octets += b"".join(_value_octets(float(x)) for x in v[i])
        out[i] = fnv1a64(octets)
