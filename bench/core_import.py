"""core.import_first_call: seconds from a fresh interpreter to the first kernel result,
with the numba cache cold (an empty cache directory) and then warm (the same directory)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from bench._harness import Result

FIRST_CALL = """
import core.compiled as c
from bench.fleet import make_fleet
fleet = make_fleet(1_000, 100)
b = fleet.batch
c.validate(b["kind"], b["flags"], b["t"], b["rx"], b["v"], b["reason"], fleet.now_ms)
c.bind(b["device"], b["user"], b["t"], b["reason"], b["patient"], fleet.bindings)
c.DedupTable().check_and_insert(b["device"], b["kind"], b["flags"], b["seq"], b["fingerprint"], b["t"], b["reason"])
"""


def _seconds(cache_dir: str) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, check=True)
    return time.perf_counter() - start


def run(quick: bool) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="pmp-numba-cache-") as cache_dir:
        cold = _seconds(cache_dir)
        warm = min(_seconds(cache_dir) for _ in range(2 if quick else 3))
    return [Result("core.import_first_call", "s", warm, "cold numba cache", cold,
                   note="fresh interpreter: import core, build a small fleet, first validate/bind/dedup")]
