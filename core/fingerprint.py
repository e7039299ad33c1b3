"""Content fingerprints of readings from reading maps (GATT records get theirs from C).

FNV-1a 64 over 36 octets, all little-endian:

    kind (1) | user (1) | flags & FINGERPRINT_FLAGS (1) | pad 0 (1) | t (8) | v[0..3] (4 x 8)

with every NaN written as the canonical quiet NaN 0x7FF8000000000000, so two readings with
the same device, type, time and values always share a fingerprint. It serves as the dedup
key of readings without a sequence number and tells DUPLICATE from CONFLICT for those with
one.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel
from .codes import Flag

FNV_OFFSET_BASIS = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
CANONICAL_NAN_BITS = 0x7FF8000000000000
# Flags that describe the value itself (a censored or flagged reading is another reading).
FINGERPRINT_FLAGS = int(Flag.RANGE_LO | Flag.RANGE_HI | Flag.ARTIFACT | Flag.CONTROL)

_EXPONENT = np.uint64(0x7FF0000000000000)
_MANTISSA = np.uint64(0x000FFFFFFFFFFFFF)


@kernel
def _fnv_word(h, word, n_octets):
    for k in range(n_octets):
        h = (h ^ ((word >> np.uint64(8 * k)) & np.uint64(0xFF))) * np.uint64(FNV_PRIME)
    return h


@kernel
def _fingerprint_kernel(kind, flags, user, t, v_bits, out):
    for i in range(kind.shape[0]):
        head = np.uint64(kind[i]) | (np.uint64(user[i]) << np.uint64(8)) | (
            np.uint64(flags[i] & FINGERPRINT_FLAGS) << np.uint64(16))
        h = _fnv_word(np.uint64(FNV_OFFSET_BASIS), head, 4)
        h = _fnv_word(h, np.uint64(t[i]), 8)
        for j in range(4):
            bits = v_bits[i, j]
            if bits & _EXPONENT == _EXPONENT and bits & _MANTISSA != 0:
                bits = np.uint64(CANONICAL_NAN_BITS)
            h = _fnv_word(h, bits, 8)
        out[i] = h


def fingerprint_readings(kind: np.ndarray, flags: np.ndarray, user: np.ndarray, t: np.ndarray, v: np.ndarray,
                         out: np.ndarray) -> None:
    """Write the fingerprint (uint64[n]) of each reading into ``out``.

    ``kind`` uint8[n], ``flags`` uint16[n], ``user`` uint8[n], ``t`` int64[n] ms UTC,
    ``v`` float64[n, 4] canonical values.
    """
    _fingerprint_kernel(kind, flags, user, t, v.view(np.uint64), out)
