"""Timing, results, the table and latest.json: what every bench module shares.

A figure is a rate measured as the best of several timed repetitions (the least disturbed
by a noisy machine), its baseline measured in the same run, and their ratio.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import time
from collections.abc import Callable

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"


@dataclasses.dataclass(frozen=True)
class Result:
    """One benchmark figure: ``value`` in ``unit`` against ``baseline_value`` of ``baseline``."""

    name: str
    unit: str
    value: float
    baseline: str
    baseline_value: float
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else float("nan")

    def as_json(self) -> dict:
        return {"name": self.name, "unit": self.unit, "value": self.value, "baseline": self.baseline,
                "baseline_value": self.baseline_value, "ratio": self.ratio, "note": self.note}


def best_seconds(fn: Callable[[], object], *, repeat: int, setup: Callable[[], object] | None = None) -> float:
    """Least wall time of ``repeat`` calls of ``fn`` (``setup`` runs untimed before each)."""
    best = float("inf")
    for _ in range(repeat):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def machine() -> dict:
    """What the figures were measured on."""
    import numba
    import numpy

    cpu = next((line.split(":", 1)[1].strip() for line in _read_lines("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "platform": platform.platform(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _read_lines(path: str) -> list[str]:
    try:
        return pathlib.Path(path).read_text().splitlines()
    except OSError:
        return []


def _figure(x: float) -> str:
    if x != x:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def table(results: list[Result]) -> str:
    """A Markdown table of the results (the README shows it)."""
    lines = ["| benchmark | value | unit | baseline | baseline value | ratio |",
             "|---|---:|---|---|---:|---:|"]
    for r in results:
        lines.append(f"| {r.name} | {_figure(r.value)} | {r.unit} | {r.baseline} | {_figure(r.baseline_value)} "
                     f"| {_figure(r.ratio)} |")
    return "\n".join(lines)


def write_json(results: list[Result], path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), "results": [r.as_json() for r in results]}
    path.write_text(json.dumps(payload, indent=2) + "\n")
