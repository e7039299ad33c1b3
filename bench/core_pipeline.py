"""core.pipeline: every stage (validate, bind, dedup, windows, reading rules) on 1e6 mixed
BP / glucose / CGM readings from 10,000 patients, fed in gateway-sized batches, compiled vs
the twin pipeline on a sample."""

from __future__ import annotations

import core.compiled
import core.reference
from bench._harness import Result, best_seconds
from bench.fleet import Fleet, make_fleet
from core.pipeline import Pipeline

BATCH = 10_000  # readings per call: what the gateway gathers under high load


def rate(impl, fleet: Fleet, n: int, repeat: int, *, presized: bool = True) -> float:
    """Readings per second of Pipeline.process over the first ``n`` readings, in batches,
    from fresh windows and an empty dedup table: sized for the run's keys as a gateway
    sizes it from its store at start (``presized``), or left to grow from its minimum,
    re-inserting every key at each doubling (what only the first fill of a gateway pays)."""
    work = {}

    def fresh() -> None:
        work["pipeline"] = Pipeline(impl, n_patients=fleet.n_patients, tz_min=fleet.tz_min, bindings=fleet.bindings,
                                    dedup_capacity=n if presized else 0)
        work["batch"] = fleet.batch[:n].copy()

    def process_all() -> None:
        pipeline, batch = work["pipeline"], work["batch"]
        for start in range(0, n, BATCH):
            pipeline.process(batch[start:start + BATCH], fleet.now_ms)

    return n / best_seconds(process_all, repeat=repeat, setup=fresh)


def run(quick: bool) -> list[Result]:
    fleet = make_fleet(200_000 if quick else 1_000_000, 10_000)
    n_twin = 5_000 if quick else 20_000
    rate(core.compiled, fleet, n_twin, repeat=1)  # compile or load the cache, untimed
    compiled = rate(core.compiled, fleet, len(fleet.batch), repeat=3 if quick else 5)
    growing = rate(core.compiled, fleet, len(fleet.batch), repeat=3 if quick else 5, presized=False)
    twin = rate(core.reference, fleet, n_twin, repeat=1)
    shape = f"{len(fleet.batch):,} readings, {fleet.n_patients:,} patients, batches of {BATCH:,}"
    return [
        Result("core.pipeline", "readings/s", compiled, "pure-Python twin", twin,
               note=f"{shape}, dedup table sized at start; twin on {n_twin:,}"),
        Result("core.pipeline.first_fill", "readings/s", growing, "core.pipeline (sized table)", compiled,
               note=f"{shape}, dedup table growing from empty (doublings re-insert every key)"),
    ]
