"""The compiled core: columnar batches of readings, C GATT decoders, numba kernels.

Public face of the package; everything else in ``core`` is an implementation detail.
A batch is a numpy array of READING_DTYPE (the C ``struct pmp_reading`` of
include/pmp.h); ``Pipeline`` runs every stage on it with the state they keep.

``PMP_PUREPYTHON=1`` in the environment selects the pure-Python twins
(``core.reference``) instead of the compiled implementations (``core.compiled``) for the
names below; both offer the same names with the same signatures and, by test, the same
results. Those names (and ``implementation``, the module chosen) are resolved on first use
(PEP 562): ``import core`` for its tables and dtypes, as the store and the command line do,
imports neither numba nor a kernel.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

from ._gatt_c import ffi as _ffi, lib as _lib
from .bindings import BINDING_DTYPE as BINDING_DTYPE
from .bindings import OPEN_END as OPEN_END
from .bindings import Bindings as Bindings
from .codes import GATT_ERRORS as GATT_ERRORS
from .codes import Flag as Flag
from .codes import GattError as GattError
from .codes import Kind as Kind
from .codes import Reason as Reason
from .codes import Unit as Unit
from .dedup_keys import KEY_DTYPE as KEY_DTYPE
from .layout import GATT_CONTEXT_DTYPE as GATT_CONTEXT_DTYPE
from .layout import READING_DTYPE as READING_DTYPE
from .layout import LayoutMismatch as LayoutMismatch
from .layout import check_against_c as _check_against_c
from .layout import empty_batch as empty_batch
from .layout import pack_values as pack_values
from .pipeline import READING_ALERT_DTYPE as READING_ALERT_DTYPE
from .pipeline import Pipeline as Pipeline
from .rule_tables import RULES as RULES
from .rule_tables import THRESHOLDS as THRESHOLDS
from .rule_tables import Rule as Rule
from .rule_tables import default_thresholds as default_thresholds
from .window_layout import WINDOW_ALERT_DTYPE as WINDOW_ALERT_DTYPE

_check_against_c(_ffi, _lib)

PUREPYTHON: bool = os.environ.get("PMP_PUREPYTHON") == "1"

# The names PUREPYTHON switches between core.compiled and core.reference.
_SWITCHED = ("bind", "DedupTable", "fingerprint_readings", "gatt_decode", "gatt_decode_batch", "reading_alerts",
             "validate", "WindowState")


def __getattr__(name: str) -> object:
    """``implementation`` or a switched name, on first use: import the implementation
    (numba and every kernel, or the twins) and bind all of them as module globals."""
    if name != "implementation" and name not in _SWITCHED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    implementation = importlib.import_module(".reference" if PUREPYTHON else ".compiled", __name__)
    globals().update({switched: getattr(implementation, switched) for switched in _SWITCHED},
                     implementation=implementation)
    return globals()[name]


def __dir__() -> list[str]:
    """The module's names, the switched ones included before their first use."""
    return sorted({*globals(), "implementation", *_SWITCHED})


class _Core(types.ModuleType):
    """The ``core`` module object. Loading a submodule sets a package attribute of its name,
    and two kernel modules are named like switched functions (``core/bind.py``,
    ``core/validate.py``): that attribute is not set, so ``core.bind`` stays the function."""

    def __setattr__(self, name: str, value: object) -> None:
        if not (name in _SWITCHED and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Core
