"""The dedup key of a record (DESIGN.md "Dedup"), exact, never a lossy hash:

    (device, TAG_SEQ, seq)                 a measurement with a device sequence number
    (device, TAG_CONTEXT_SEQ, seq)         a glucose context record (shares its seq with
                                           its measurement, so it gets a tag of its own)
    (device, TAG_FINGERPRINT, fingerprint) anything else: the 64-bit content fingerprint

``KEY_DTYPE`` rows are the keys as the store keeps them and ``core.dedup.DedupTable`` is
rebuilt from (with the content fingerprint and measurement time of each). Plain numpy: the
store imports them without the numba kernels.
"""

from __future__ import annotations

import numpy as np

TAG_SEQ = 1
TAG_FINGERPRINT = 2
TAG_CONTEXT_SEQ = 3

KEY_DTYPE = np.dtype([("device", "<i4"), ("tag", "u1"), ("key", "<u8"), ("fingerprint", "<u8"), ("t", "<i8")])
