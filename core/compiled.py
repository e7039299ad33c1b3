"""The compiled implementations: C GATT decoders (cffi) and numba kernels.

Same names and signatures as ``core.reference``; ``core`` re-exports one of the two.
"""

from .bind import bind as bind
from .dedup import DedupTable as DedupTable
from .fingerprint import fingerprint_readings as fingerprint_readings
from .validate import validate as validate
