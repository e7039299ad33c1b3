"""The numpy dtype of ``struct pmp_reading`` and its import-time check against the C layout.

A batch is a 1-D numpy array of READING_DTYPE: one row per reading (or decoded GATT
record), columns as in include/pmp.h. Kernels take column views of it
(``batch["t"]``, ``batch["v"]``, ...), so the C decoder, the numba kernels and the
pure-Python twins all share one memory layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import codes

READING_FIELDS: list[tuple[str, str, tuple[int, ...]]] = [
    ("t", "<i8", ()),
    ("rx", "<i8", ()),
    ("fingerprint", "<u8", ()),
    ("v", "<f8", (4,)),
    ("device", "<i4", ()),
    ("patient", "<i4", ()),
    ("seq", "<u4", ()),
    ("status", "<u4", ()),
    ("flags", "<u2", ()),
    ("kind", "u1", ()),
    ("reason", "u1", ()),
    ("unit_in", "u1", ()),
    ("user", "u1", ()),
    ("aux", "u1", (10,)),
]

READING_DTYPE = np.dtype([(name, fmt, shape) for name, fmt, shape in READING_FIELDS], align=True)

GATT_CONTEXT_DTYPE = np.dtype(
    [
        ("rx", "<i8"),
        ("cgm_start", "<i8"),
        ("device", "<i4"),
        ("tz_min", "<i2"),
        ("has_cgm_start", "u1"),
        ("reserved", "u1"),
    ],
    align=True,
)


class LayoutMismatch(ImportError):
    """Raised at import when the numpy layout or a code table disagrees with include/pmp.h.

    It means the C extension was built from a different header than this Python code:
    rebuild with ``pip install -e .``.
    """


def empty_batch(n: int) -> np.ndarray:
    """A batch of n blank records: values NaN, no patient, no user, aux absent, reason OK."""
    batch = np.zeros(n, dtype=READING_DTYPE)
    batch["v"] = np.nan
    batch["patient"] = codes.NO_PATIENT
    batch["user"] = codes.NO_USER
    batch["aux"] = codes.AUX_ABSENT
    return batch


def gatt_context(*, device: int, rx: int, tz_min: int, cgm_start: int | None) -> np.ndarray:
    """A one-element GATT_CONTEXT_DTYPE array: what a hub says about one value.

    ``rx`` and ``cgm_start`` in ms UTC (``cgm_start`` None when the hub sent none),
    ``tz_min`` the meter's local clock minus UTC in minutes.
    """
    ctx = np.zeros(1, dtype=GATT_CONTEXT_DTYPE)
    ctx["device"], ctx["rx"], ctx["tz_min"] = device, rx, tz_min
    if cgm_start is not None:
        ctx["cgm_start"], ctx["has_cgm_start"] = cgm_start, 1
    return ctx


def _check_struct(ffi, c_name: str, dtype: np.dtype) -> None:
    c_fields = dict(ffi.typeof(c_name).fields)
    if list(c_fields) != list(dtype.names):
        raise LayoutMismatch(f"{c_name} fields {list(c_fields)} != numpy fields {list(dtype.names)}")
    if ffi.sizeof(c_name) != dtype.itemsize:
        raise LayoutMismatch(f"sizeof({c_name}) = {ffi.sizeof(c_name)}, numpy itemsize = {dtype.itemsize}")
    for name, c_field in c_fields.items():
        np_type, np_offset = dtype.fields[name][:2]
        c_size = ffi.sizeof(c_field.type)
        if (c_field.offset, c_size) != (np_offset, np_type.itemsize):
            raise LayoutMismatch(
                f"{c_name}.{name}: C offset/size {c_field.offset}/{c_size}, "
                f"numpy {np_offset}/{np_type.itemsize}"
            )


def check_against_c(ffi, lib) -> None:
    """Compare READING_DTYPE, GATT_CONTEXT_DTYPE and every code table with the C header."""
    _check_struct(ffi, "struct pmp_reading", READING_DTYPE)
    _check_struct(ffi, "struct pmp_gatt_context", GATT_CONTEXT_DTYPE)
    for table, prefix in codes.C_PREFIXES.items():
        c_names = {name[len(prefix):]: getattr(lib, name) for name in dir(lib) if name.startswith(prefix)}
        py_names = {member.name: int(member.value) for member in table}
        if c_names != py_names:
            raise LayoutMismatch(f"{table.__name__} {py_names} != C {prefix}* {c_names}")


def pack_values(values: Sequence[bytes]) -> tuple[bytes, np.ndarray]:
    """Lay GATT values end to end for the batch decoders.

    Returns ``(buf, offsets)``: value i is ``buf[offsets[i]:offsets[i + 1]]``; offsets is
    int64 with ``len(values) + 1`` entries, starting at 0 and never decreasing.
    """
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(value) for value in values], dtype=np.int64)
    return b"".join(values), offsets
