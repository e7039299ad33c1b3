"""core.validate_dedup: validation + dedup of a fleet batch, numba kernels vs pure-Python twins."""

from __future__ import annotations

import numpy as np

import core.compiled
import core.reference
from bench._harness import Result, best_seconds
from bench.fleet import make_fleet


def _stages(impl, batch: np.ndarray, now_ms: int) -> None:
    impl.validate(batch["kind"], batch["flags"], batch["t"], batch["rx"], batch["v"], batch["reason"], now_ms)
    impl.DedupTable().check_and_insert(batch["device"], batch["kind"], batch["flags"], batch["seq"],
                                       batch["fingerprint"], batch["t"], batch["reason"])


def rate(impl, source: np.ndarray, now_ms: int, repeat: int) -> float:
    """Readings per second of validate + dedup (a fresh table each run) over ``source``."""
    work = source.copy()

    def reset() -> None:
        work[:] = source

    return len(source) / best_seconds(lambda: _stages(impl, work, now_ms), repeat=repeat, setup=reset)


def run(quick: bool) -> list[Result]:
    fleet = make_fleet(200_000 if quick else 1_000_000, 10_000)
    sample = fleet.batch[: 5_000 if quick else 20_000]
    rate(core.compiled, sample, fleet.now_ms, repeat=1)  # compile or load the cache, untimed
    compiled = rate(core.compiled, fleet.batch, fleet.now_ms, repeat=3 if quick else 5)
    twin = rate(core.reference, sample, fleet.now_ms, repeat=1)
    return [Result("core.validate_dedup", "readings/s", compiled, "pure-Python twin", twin,
                   note=f"{len(fleet.batch):,} readings, twin on {len(sample):,}")]
