"""cffi out-of-line API-mode builder for the C GATT decoders (core._gatt_c).

The header include/pmp.h is the cdef: its preprocessor lines are dropped and the rest is
handed to cffi unchanged, so the C layout and the Python binding can never drift.

Build knobs (environment variables, read at build time):
    PMP_SANITIZE=1   compile with AddressSanitizer + UndefinedBehaviorSanitizer
                     (for the sanitizer test run; load with LD_PRELOAD of libasan).
    PMP_CFLAGS       extra compiler flags, appended last.
"""

from __future__ import annotations

import os
import pathlib
import shlex

from cffi import FFI

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER = ROOT / "include" / "pmp.h"
SOURCE = ROOT / "core" / "gatt.c"

SANITIZE = os.environ.get("PMP_SANITIZE") == "1"
EXTRA_CFLAGS = shlex.split(os.environ.get("PMP_CFLAGS", ""))

# -ffp-contract=off: no fused multiply-add, so C conversions round exactly like the
# pure-Python twin (bit-for-bit records are a tested invariant).
BASE_CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off"]
SANITIZE_FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                  "-fno-sanitize-recover=all"]


def header_cdef(text: str) -> str:
    """Return the header without preprocessor lines: the part cffi's cdef parses."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def make_ffi() -> FFI:
    ffi = FFI()
    ffi.cdef(header_cdef(HEADER.read_text()))
    cflags = BASE_CFLAGS + (SANITIZE_FLAGS if SANITIZE else []) + EXTRA_CFLAGS
    ffi.set_source(
        "core._gatt_c",
        '#include "pmp.h"',
        sources=[str(SOURCE.relative_to(ROOT))],
        include_dirs=[str(HEADER.parent)],
        extra_compile_args=cflags,
        extra_link_args=["-fsanitize=address,undefined"] if SANITIZE else [],
    )
    return ffi


ffibuilder = make_ffi()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
