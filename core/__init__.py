"""The compiled core: columnar batches of readings, C GATT decoders, numba kernels.

Public face of the package; everything else in ``core`` is an implementation detail.
A batch is a numpy array of READING_DTYPE (the C ``struct pmp_reading`` of
include/pmp.h); ``Pipeline`` runs every stage on it with the state they keep.

``PMP_PUREPYTHON=1`` in the environment selects the pure-Python twins
(``core.reference``) instead of the compiled implementations (``core.compiled``) for the
names below; both offer the same names with the same signatures and, by test, the same
results.
"""

from __future__ import annotations

import os

from ._gatt_c import ffi as _ffi, lib as _lib
from .bind import BINDING_DTYPE as BINDING_DTYPE
from .bind import OPEN_END as OPEN_END
from .bind import Bindings as Bindings
from .codes import GATT_ERRORS as GATT_ERRORS
from .codes import Flag as Flag
from .codes import GattError as GattError
from .codes import Kind as Kind
from .codes import Reason as Reason
from .codes import Unit as Unit
from .dedup import KEY_DTYPE as KEY_DTYPE
from .layout import GATT_CONTEXT_DTYPE as GATT_CONTEXT_DTYPE
from .layout import READING_DTYPE as READING_DTYPE
from .layout import LayoutMismatch as LayoutMismatch
from .layout import check_against_c as _check_against_c
from .layout import empty_batch as empty_batch
from .layout import pack_values as pack_values
from .pipeline import READING_ALERT_DTYPE as READING_ALERT_DTYPE
from .pipeline import Pipeline as Pipeline
from .rules import RULES as RULES
from .rules import THRESHOLDS as THRESHOLDS
from .rules import Rule as Rule
from .rules import default_thresholds as default_thresholds
from .windows import WINDOW_ALERT_DTYPE as WINDOW_ALERT_DTYPE

_check_against_c(_ffi, _lib)

PUREPYTHON: bool = os.environ.get("PMP_PUREPYTHON") == "1"

if PUREPYTHON:
    from . import reference as implementation
else:
    from . import compiled as implementation

bind = implementation.bind
DedupTable = implementation.DedupTable
fingerprint_readings = implementation.fingerprint_readings
gatt_decode = implementation.gatt_decode
gatt_decode_batch = implementation.gatt_decode_batch
reading_alerts = implementation.reading_alerts
validate = implementation.validate
WindowState = implementation.WindowState
