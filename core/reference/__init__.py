"""Pure-Python twins of every compiled decoder and kernel: same names, same signatures.

Written for clarity (plain loops, dicts, ``int.from_bytes``) and independently of the
compiled code, so that the differential tests catch algorithm bugs, not just typos.
"""

from .bind import bind as bind
from .dedup import DedupTable as DedupTable
from .fingerprint import fingerprint_readings as fingerprint_readings
from .gatt import decode as gatt_decode
from .gatt import decode_batch as gatt_decode_batch
from .rules import reading_alerts as reading_alerts
from .validate import validate as validate
from .windows import WindowState as WindowState
