"""cli.status_once: how long does an operator wait for ``pmpgw status --once`` (target
< 300 ms), against the bare start of the same Python?

value    ms of wall time of ``pmpgw status --once --db DB`` as a new process (the console
         script): interpreter start, imports (only the status command's module, no numba,
         trio or paho), the database's counters, open alerts and silent devices, the view;
baseline ms of ``python -c pass`` with the same interpreter: the floor of any command.

The database: 10,000 patients, 100,000 readings of the seeded fleet through the core and
the store, 2,000 open alerts of every severity (DEVICE tasks name silent devices); no
gateway has run on it (no broker to ask). On the project's disk, warm page cache. Both
commands run with their bytecode cached (in a temp dir, whatever PYTHONDONTWRITEBYTECODE
says here), as every run after an operator's first one does.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile
import time

import core
import core.compiled
from bench._harness import Result
from bench.fleet import make_fleet
from gateway.store import Store

PROJECT_DIR = pathlib.Path(__file__).resolve().parent.parent
PMPGW = pathlib.Path(sys.executable).with_name("pmpgw")
N_PATIENTS = 10_000
N_READINGS = 100_000
N_ALERTS = 2_000
BATCH = 5_000
ALERT_RULES = ("BP_CRISIS", "GLU_HIGH", "BP_HOME_HIGH", "MISSED", "DEVICE")


def _build(path: pathlib.Path) -> None:
    fleet = make_fleet(N_READINGS, N_PATIENTS)
    pipeline = core.Pipeline(core.compiled, n_patients=fleet.n_patients, tz_min=fleet.tz_min,
                             bindings=fleet.bindings, dedup_capacity=N_READINGS)
    batch = fleet.batch.copy()
    pipeline.process(batch, fleet.now_ms)
    alerts = [{"patient": p, "rule": ALERT_RULES[p % len(ALERT_RULES)], "t": fleet.now_ms - p * 60_000,
               "late": False, "values": {"devices": {f"meter-{p}": ["silent"]}} if p % len(ALERT_RULES) == 4 else {}}
              for p in range(N_ALERTS)]
    with Store.open(path, synchronous="NORMAL") as store:
        added = store.add_patients([{"id": f"P{p}"} for p in range(N_PATIENTS)], now_ms=fleet.now_ms)
        assert added.added == N_PATIENTS, added.rejected[:3]
        for start in range(0, len(batch), BATCH):
            store.commit_batch(batch[start:start + BATCH], now_ms=fleet.now_ms)
        store.commit_batch(core.empty_batch(0), now_ms=fleet.now_ms, alerts=alerts)


def _cached_bytecode(cache: pathlib.Path) -> dict[str, str]:
    """This environment, with bytecode written to and read from ``cache``."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(cache)}


def _best_ms(command: list[str], env: dict[str, str], repeat: int) -> float:
    """Least wall time of ``repeat`` runs of ``command`` as a new process, in ms."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def run(quick: bool) -> list[Result]:
    repeat = 5 if quick else 11
    with tempfile.TemporaryDirectory(dir=PROJECT_DIR, prefix=".bench-status-") as tmp:
        db = pathlib.Path(tmp) / "pmp.db"
        _build(db)
        env = _cached_bytecode(pathlib.Path(tmp) / "pycache")
        status = [PMPGW, "status", "--once", "--db", db]
        view = subprocess.run(status, env=env, check=True, capture_output=True, text=True)  # and caches bytecode
        assert f"alerts    emergency {N_ALERTS // len(ALERT_RULES):,}" in view.stdout, view.stdout
        status_ms = _best_ms(status, env, repeat)
        bare_ms = _best_ms([sys.executable, "-c", "pass"], env, repeat)
    note = (f"best of {repeat} new processes; {N_PATIENTS:,} patients, {N_READINGS:,} readings, {N_ALERTS:,} open "
            "alerts, no gateway running; target < 300 ms")
    return [Result("cli.status_once", "ms", status_ms, "python -c pass", bare_ms, note=note)]
