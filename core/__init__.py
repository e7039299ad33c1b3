"""The compiled core: columnar batches of readings, C GATT decoders, numba kernels.

Public face of the package; everything else in ``core`` is an implementation detail.
``PMP_PUREPYTHON=1`` in the environment selects the pure-Python twins
(``core.reference``) instead of the compiled implementations (``core.compiled``); both
offer the same names with the same signatures and, by test, the same results.
"""

from __future__ import annotations

import os

from ._gatt_c import ffi as _ffi, lib as _lib
from .codes import GATT_ERRORS as GATT_ERRORS
from .codes import Flag as Flag
from .codes import GattError as GattError
from .codes import Kind as Kind
from .codes import Reason as Reason
from .codes import Unit as Unit
from .layout import GATT_CONTEXT_DTYPE as GATT_CONTEXT_DTYPE
from .layout import READING_DTYPE as READING_DTYPE
from .layout import LayoutMismatch as LayoutMismatch
from .layout import check_against_c as _check_against_c
from .layout import empty_batch as empty_batch

_check_against_c(_ffi, _lib)

PUREPYTHON: bool = os.environ.get("PMP_PUREPYTHON") == "1"
