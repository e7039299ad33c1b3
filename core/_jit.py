"""The one house decorator for numba kernels (STYLE.md pattern 6).

Every kernel in ``core`` is compiled with the same options:

- ``nogil=True``: the core runs in a worker thread, so kernels release the GIL;
- ``cache=True``: compiled code is cached beside the module (warm import in well under 2 s);
- ``error_model="numpy"``: float division by zero gives inf/NaN like numpy instead of
  raising, and lets numba vectorise divisions in hot loops;
- ``boundscheck=False``: callers pass preallocated arrays of the documented shapes.

Usage::

    from ._jit import kernel

    @kernel
    def f(x): ...
"""

from __future__ import annotations

import functools

import numba

KERNEL_OPTIONS: dict[str, bool | str] = {
    "nogil": True,
    "cache": True,
    "error_model": "numpy",
    "boundscheck": False,
}

kernel = functools.partial(numba.njit, **KERNEL_OPTIONS)
"""``numba.njit`` with the house options; use as ``@kernel`` or ``@kernel(signature)``."""
