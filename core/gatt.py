"""Thin binding of the C GATT decoders (core/gatt.c): arguments checked, C called, numpy back.

No ``ffi`` or ``lib`` object leaves this module. Records are READING_DTYPE rows in
canonical units (mmHg, mmol/L, bpm, ms UTC); the meaning of ``v`` and ``aux`` per kind is in
include/pmp.h. The pure-Python twin with the same functions is ``core.reference.gatt``.
"""

from __future__ import annotations

import numpy as np

from ._gatt_c import ffi as _ffi, lib as _lib
from .codes import UUID_CGM_MEASUREMENT, GattError
from .layout import GATT_CONTEXT_DTYPE, READING_DTYPE, gatt_context

# Every CGM record takes at least 6 octets and every other value yields one record, so a
# value of len octets yields at most max(1, len // 6) records.
_MIN_RECORD_OCTETS = 6


def decode(
    uuid: int,
    value: bytes,
    *,
    device: int = 0,
    rx: int = 0,
    tz_min: int = 0,
    cgm_start: int | None = None,
) -> tuple[np.ndarray, GattError]:
    """Decode one characteristic value.

    ``uuid`` is the 16-bit characteristic UUID, ``value`` its octets as received, ``device``
    the device index copied into each record, ``rx`` the hub receive time (ms UTC),
    ``tz_min`` the meter's local clock minus UTC (minutes, int16), ``cgm_start`` the CGM
    session start (ms UTC) or None. Returns the records (one, or one per CGM record) and
    ``GattError.OK``, or an empty array and the error. Out-of-range integers raise
    OverflowError.
    """
    if not 0 <= uuid <= 0xFFFF:
        return np.empty(0, dtype=READING_DTYPE), GattError.UUID
    ctx = gatt_context(device=device, rx=rx, tz_min=tz_min, cgm_start=cgm_start)
    value = bytes(value)
    out = np.empty(max(1, len(value) // _MIN_RECORD_OCTETS), dtype=READING_DTYPE)
    n_out = _ffi.new("size_t *")
    err = _lib.pmp_gatt_decode(
        uuid,
        _ffi.from_buffer("uint8_t[]", value),
        len(value),
        _ffi.from_buffer("struct pmp_gatt_context *", ctx),
        _ffi.from_buffer("struct pmp_reading[]", out, require_writable=True),
        len(out),
        n_out,
    )
    return out[: n_out[0]], GattError(err)


def _check_batch(buf: bytes, offsets: np.ndarray, uuids: np.ndarray, contexts: np.ndarray) -> int:
    n = len(uuids)
    if offsets.ndim != 1 or len(offsets) != n + 1:
        raise ValueError(f"offsets must have len(uuids) + 1 = {n + 1} entries, not {offsets.shape}")
    if len(contexts) != n:
        raise ValueError(f"contexts must have {n} entries, not {len(contexts)}")
    if contexts.dtype != GATT_CONTEXT_DTYPE:
        raise TypeError(f"contexts must be GATT_CONTEXT_DTYPE, not {contexts.dtype}")
    if offsets[0] < 0 or offsets[-1] > len(buf) or (np.diff(offsets) < 0).any():
        raise ValueError("offsets must start at >= 0, never decrease and end within buf")
    return n


def decode_batch(
    buf: bytes, offsets: np.ndarray, uuids: np.ndarray, contexts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode n values laid end to end in ``buf`` (see ``core.layout.pack_values``).

    ``offsets``: int64[n + 1], value i is ``buf[offsets[i]:offsets[i + 1]]``; ``uuids``:
    uint16[n]; ``contexts``: GATT_CONTEXT_DTYPE[n]. Returns ``(records, value_index,
    errors)``: READING_DTYPE records in value order, int32 index of the value each record
    came from, and uint8 GattError per value. A value that fails yields exactly one record
    with reason DECODE (SCHEMA for an unknown uuid) and the fingerprint of its raw octets.
    """
    buf = bytes(buf)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    uuids = np.ascontiguousarray(uuids, dtype=np.uint16)
    contexts = np.ascontiguousarray(contexts)
    n = _check_batch(buf, offsets, uuids, contexts)
    lengths = np.diff(offsets)
    cap = n + int((lengths[uuids == UUID_CGM_MEASUREMENT] // _MIN_RECORD_OCTETS).sum())
    out = np.empty(max(cap, 1), dtype=READING_DTYPE)
    value_index = np.empty(max(cap, 1), dtype=np.int32)
    errors = np.zeros(max(n, 1), dtype=np.uint8)
    count = _lib.pmp_gatt_decode_batch(
        _ffi.from_buffer("uint8_t[]", buf),
        _ffi.from_buffer("int64_t[]", offsets),
        n,
        _ffi.from_buffer("uint16_t[]", uuids),
        _ffi.from_buffer("struct pmp_gatt_context[]", contexts),
        _ffi.from_buffer("struct pmp_reading[]", out, require_writable=True),
        cap,
        _ffi.from_buffer("int32_t[]", value_index, require_writable=True),
        _ffi.from_buffer("uint8_t[]", errors, require_writable=True),
    )
    if count < 0:
        raise RuntimeError(f"pmp_gatt_decode_batch: capacity {cap} (values + CGM octets // 6) was too small")
    return out[:count], value_index[:count], errors[:n]
