"""report.coverage: how long does the programme indicator take for 200,000 patients (target
< 5 s), against one raw pass over the same patients?

value    seconds of ``pmpgw report coverage --json`` without the printing:
         ``Store.coverage_counts`` (SQL aggregates: the cohort, protocols issued in the last
         12 months, devices bound at as-of, per physician x personal administrator x
         programme; the patients without a device) and ``gateway.clinical.coverage_report``;
baseline seconds of ``fetchall()`` of every patient's (idx, physician, personal_admin,
         programmes, dispensary) on a raw sqlite3 connection: the floor for looking at each
         patient once from Python, before any protocol or binding is joined.

The cohort (seeded): 200,000 patients (AH, DM1, DM2 and combinations; 3 % not under
dispensary observation), 1,000 personal administrators and 400 physicians; a tonometer or
glucometer bound to 95 % (some bindings already ended); one to three protocols for 70 %,
some older than 12 months. Database on the project's disk, warm page cache.
"""

from __future__ import annotations

import pathlib
import sqlite3
import tempfile

import numpy as np

from bench._harness import Result, best_seconds
from gateway.clinical import coverage_report, twelve_months_before
from gateway.store import Store
from gateway.store.sql import INSERT_BINDING, INSERT_DEVICE, INSERT_PROTOCOL, PRAGMAS

PROJECT_DIR = pathlib.Path(__file__).resolve().parent.parent
N_PATIENTS = 200_000
N_ADMINS, N_PHYSICIANS = 1_000, 400
AS_OF = 1_764_072_000_000  # 2025-11-25T12:00:00Z, the fleet's clock
DAY_MS = 86_400_000
PROGRAMMES = ("AH", "DM2", "AH,DM2", "DM1", "AH,DM1")
RAW_PASS = "SELECT idx, physician, personal_admin, programmes, dispensary FROM patients"


def _build(path: pathlib.Path, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    created = AS_OF - 800 * DAY_MS
    with Store.open(path, synchronous="NORMAL") as store:
        for i in range(N_ADMINS):
            store.add_staff(f"PA{i}", f"Administrator {i}", "personal_admin")
        for i in range(N_PHYSICIANS):
            store.add_staff(f"DR{i}", f"Physician {i}", "physician")
        programmes = rng.choice(len(PROGRAMMES), N_PATIENTS, p=[0.45, 0.25, 0.15, 0.05, 0.10])
        dispensary = rng.random(N_PATIENTS) >= 0.03
        added = store.add_patients([{"id": f"P{i}", "programmes": PROGRAMMES[programmes[i]].split(","),
                                     "dispensary": bool(dispensary[i]), "tz": "Europe/Moscow",
                                     "physician": f"DR{i % N_PHYSICIANS}", "personal_admin": f"PA{i % N_ADMINS}"}
                                    for i in range(N_PATIENTS)], now_ms=created)
        assert added.added == N_PATIENTS, added.rejected[:3]
    equipped = np.flatnonzero(rng.random(N_PATIENTS) < 0.95)
    ended = rng.random(len(equipped)) < 0.03  # returned before as-of
    n_protocols = np.where(rng.random(N_PATIENTS) < 0.7, rng.integers(1, 4, N_PATIENTS), 0)
    owner = np.repeat(np.arange(N_PATIENTS), n_protocols)
    issued = AS_OF - rng.integers(1, 500, len(owner)) * DAY_MS
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(INSERT_DEVICE, ((f"D{p}", int(i), "bp" if p % 2 else "glu", created)
                                     for i, p in enumerate(equipped.tolist())))
    conn.executemany(INSERT_BINDING, ((i, None, created, AS_OF - DAY_MS if e else None, p, created)
                                      for i, (p, e) in enumerate(zip(equipped.tolist(), ended.tolist()))))
    conn.executemany(INSERT_PROTOCOL, ((p, t - 31 * DAY_MS, t - DAY_MS, t, None, "{}")
                                       for p, t in zip(owner.tolist(), issued.tolist())))
    conn.execute("COMMIT")
    conn.close()


def run(quick: bool) -> list[Result]:
    repeat = 2 if quick else 5
    since = twelve_months_before(AS_OF)
    with tempfile.TemporaryDirectory(dir=PROJECT_DIR, prefix=".bench-coverage-") as tmp:
        path = pathlib.Path(tmp) / "pmp.db"
        _build(path)
        with Store.open(path) as store:
            def coverage() -> dict:
                return coverage_report(store.coverage_counts(AS_OF, since, limit=50), as_of=AS_OF, since=since)

            report = coverage()
            seconds = best_seconds(coverage, repeat=repeat)
        conn = sqlite3.connect(path)
        for pragma in PRAGMAS:
            conn.execute(pragma)
        raw = best_seconds(lambda: conn.execute(RAW_PASS).fetchall(), repeat=repeat)
        conn.close()
    note = (f"{N_PATIENTS:,} patients, cohort {report['patients']:,}, indicator {report['indicator_pct']} %, "
            f"{report['without_device']:,} without a device, {len(report['groups']):,} personal administrators")
    return [Result("report.coverage", "s", seconds, "raw fetch of every patient's row", raw, note=note)]
