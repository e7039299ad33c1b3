"""Device bindings as the bind kernel (``core.bind``) takes them.

A binding row (BINDING_DTYPE) says that readings of ``device`` (and user slot ``user``, or
any slot when it is NO_USER) measured in ``[start, end)`` ms UTC belong to ``patient``; an
open binding ends at OPEN_END. ``Bindings`` holds them sorted by device with a per-device
index. Plain numpy: the store builds them without the numba kernels.
"""

from __future__ import annotations

import numpy as np

BINDING_DTYPE = np.dtype(
    [("device", "<i4"), ("user", "u1"), ("start", "<i8"), ("end", "<i8"), ("patient", "<i4")], align=True
)
OPEN_END = np.iinfo(np.int64).max


class Bindings:
    """Bindings sorted by device with a per-device index (CSR), ready for the kernel.

    ``rows`` is an array of BINDING_DTYPE; device indexes are 0 .. n_devices-1.
    """

    def __init__(self, rows: np.ndarray, n_devices: int) -> None:
        rows = np.asarray(rows, dtype=BINDING_DTYPE)
        if len(rows) and (rows["device"].min() < 0 or rows["device"].max() >= n_devices):
            raise ValueError(f"binding device index outside 0..{n_devices - 1}")
        self.rows = np.sort(rows, order=["device", "user", "start"], kind="stable")
        counts = np.bincount(self.rows["device"], minlength=n_devices)
        self.device_start = np.zeros(n_devices + 1, dtype=np.int64)
        np.cumsum(counts, out=self.device_start[1:])
        self.n_devices = n_devices

    @classmethod
    def from_tuples(cls, tuples: list[tuple[int, int, int, int, int]], n_devices: int) -> "Bindings":
        """Build from ``(device, user, start_ms, end_ms, patient)`` tuples."""
        return cls(np.array(tuples, dtype=BINDING_DTYPE), n_devices)
