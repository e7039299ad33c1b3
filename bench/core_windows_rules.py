"""core.windows_rules: window updates + reading rules on a validated, bound, deduplicated
batch, numba kernels vs pure-Python twins."""

from __future__ import annotations

import numpy as np

import core.compiled
import core.reference
from bench._harness import Result, best_seconds
from bench.fleet import Fleet, make_fleet
from core.pipeline import READING_ALERT_DTYPE
from core.rule_tables import cgm_state, default_thresholds


def _prepared(fleet: Fleet) -> np.ndarray:
    """The fleet's batch after validate, bind and dedup (what windows and rules receive)."""
    batch = fleet.batch.copy()
    core.compiled.validate(batch["kind"], batch["flags"], batch["t"], batch["rx"], batch["v"], batch["reason"],
                           fleet.now_ms)
    core.compiled.bind(batch["device"], batch["user"], batch["t"], batch["reason"], batch["patient"], fleet.bindings)
    core.compiled.DedupTable().check_and_insert(batch["device"], batch["kind"], batch["flags"], batch["seq"],
                                                batch["fingerprint"], batch["t"], batch["reason"])
    return batch


def rate(impl, fleet: Fleet, batch: np.ndarray, repeat: int) -> float:
    """Readings per second of WindowState.update + reading_alerts (fresh state each run)."""
    thresholds = default_thresholds(fleet.n_patients)
    alerts = np.empty(2 * len(batch), dtype=READING_ALERT_DTYPE)
    state = {}

    def fresh() -> None:
        state["windows"] = impl.WindowState(fleet.n_patients, fleet.tz_min)
        state["cgm"] = cgm_state(fleet.n_patients)

    def stages() -> None:
        state["windows"].update(batch, thresholds)
        impl.reading_alerts(batch["patient"], batch["kind"], batch["t"], batch["v"], batch["flags"], batch["reason"],
                            thresholds, *state["cgm"], alerts["reading"], alerts["rule"])

    return len(batch) / best_seconds(stages, repeat=repeat, setup=fresh)


def run(quick: bool) -> list[Result]:
    fleet = make_fleet(200_000 if quick else 1_000_000, 10_000)
    batch = _prepared(fleet)
    sample = batch[: 5_000 if quick else 20_000]
    rate(core.compiled, fleet, sample, repeat=1)  # compile or load the cache, untimed
    compiled = rate(core.compiled, fleet, batch, repeat=3 if quick else 5)
    twin = rate(core.reference, fleet, sample, repeat=1)
    return [Result("core.windows_rules", "readings/s", compiled, "pure-Python twin", twin,
                   note=f"{len(batch):,} readings of {fleet.n_patients:,} patients, twin on {len(sample):,}")]
