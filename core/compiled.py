"""The compiled implementations: C GATT decoders (cffi) and numba kernels.

Same names and signatures as ``core.reference``; ``core`` re-exports one of the two.
"""

from .bind import bind as bind
from .dedup import DedupTable as DedupTable
from .fingerprint import fingerprint_readings as fingerprint_readings
from .gatt import decode as gatt_decode
from .gatt import decode_batch as gatt_decode_batch
from .rules import reading_alerts as reading_alerts
from .validate import validate as validate
from .windows import WindowState as WindowState
