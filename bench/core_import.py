"""core.import_first_call: seconds from a fresh interpreter to the first result of every
kernel (a whole pipeline pass and a day close), with the numba cache cold (an empty cache
directory: this is the compile time) and then warm (the same directory)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from bench._harness import Result

FIRST_CALL = """
import core, core.compiled
from bench.fleet import make_fleet
fleet = make_fleet(1_000, 100)
pipeline = core.Pipeline(core.compiled, n_patients=100, tz_min=fleet.tz_min, bindings=fleet.bindings)
pipeline.process(fleet.batch, fleet.now_ms)
pipeline.close_days(fleet.batch["patient"][:10].clip(0), fleet.batch["t"][:10] // 86_400_000)
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
                   note="fresh interpreter: import core, a small fleet, one pipeline pass and a day close")]
