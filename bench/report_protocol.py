"""report.protocol: how long does the final protocol of a patient with one year of CGM data
take (target < 1 s), against fetching the same rows with raw SQL?

value    seconds from the patient's id and period to the protocol dict, as
         ``pmpgw report protocol --draft`` computes it: registry facts, the readings as
         numpy columns (``Store.report_readings``), bindings, alerts with their history,
         and ``gateway.clinical.build_protocol`` (adherence, ESH home BP, glucose, CGM time
         in ranges over local days of Europe/Moscow);
baseline seconds of ``fetchall()`` of the same readings with the store's own statement
         (REPORT_READINGS) on a raw sqlite3 connection: the floor for reading those rows
         into Python, no columns, no computation.

The patient: a CGM every 5 minutes for 365 days (105,120 readings, a few LO/HI and
artifacts), a tonometer twice a day and a glucometer once a day, an alert a batch of 5,000
acknowledged and resolved by staff; the database on the project's disk, warm page cache (best of several runs).
"""

from __future__ import annotations

import datetime
import pathlib
import sqlite3
import tempfile

import numpy as np

import core
from bench._harness import Result, best_seconds
from core.codes import Flag, Kind
from gateway.clinical import build_protocol, patient_period
from gateway.store import Store
from gateway.store.sql import PRAGMAS, REPORT_READINGS

PROJECT_DIR = pathlib.Path(__file__).resolve().parent.parent
FIRST, END = datetime.date(2025, 1, 1), datetime.date(2026, 1, 1)
TZ = "Europe/Moscow"
MINUTE_MS = 60_000
DAY_MS = 86_400_000
BATCH = 5_000


def _readings(start_ms: int, days: int, seed: int = 7) -> np.ndarray:
    """The year's readings as one processed batch (reason OK): CGM device 0, tonometer 1,
    glucometer 2, all of patient 0."""
    rng = np.random.default_rng(seed)
    cgm_t = start_ms + np.arange(days * 288, dtype=np.int64) * 5 * MINUTE_MS
    day_t = start_ms + np.arange(days, dtype=np.int64) * DAY_MS
    bp_t = np.concatenate([day_t + 7 * 60 * MINUTE_MS, day_t + 20 * 60 * MINUTE_MS])
    glu_t = day_t + 8 * 60 * MINUTE_MS
    n_cgm, n_bp = len(cgm_t), len(bp_t)
    batch = core.empty_batch(n_cgm + n_bp + len(glu_t))
    batch["t"] = np.concatenate([cgm_t, bp_t, glu_t])
    batch["rx"] = batch["t"]
    batch["kind"] = np.repeat([Kind.CGM, Kind.BP, Kind.GLU], [n_cgm, n_bp, len(glu_t)])
    batch["device"] = np.repeat([0, 1, 2], [n_cgm, n_bp, len(glu_t)])
    batch["patient"] = 0
    batch["seq"] = np.arange(len(batch))
    batch["fingerprint"] = np.arange(len(batch))
    flags = np.full(len(batch), Flag.HAS_TIME | Flag.HAS_SEQ, dtype=np.uint16)
    hours = (cgm_t % DAY_MS) / (60 * MINUTE_MS)
    glucose = 7.5 + 2.5 * np.sin(hours / 24 * 2 * np.pi) + rng.normal(0, 1.2, n_cgm)
    censored = rng.random(n_cgm)
    flags[:n_cgm][censored < 0.001] |= np.uint16(Flag.RANGE_LO)
    flags[:n_cgm][censored > 0.999] |= np.uint16(Flag.RANGE_HI)
    glucose[(censored < 0.001) | (censored > 0.999)] = np.nan
    flags[rng.random(len(batch)) < 0.005] |= np.uint16(Flag.ARTIFACT)
    batch["flags"] = flags
    v = batch["v"]
    v[:n_cgm, 0] = np.clip(glucose, 2.0, 25.0)
    v[n_cgm:n_cgm + n_bp, 0] = rng.normal(138, 12, n_bp)
    v[n_cgm:n_cgm + n_bp, 1] = rng.normal(86, 8, n_bp)
    v[n_cgm:n_cgm + n_bp, 3] = rng.normal(72, 8, n_bp)
    v[n_cgm + n_bp:, 0] = rng.normal(7.8, 1.8, len(glu_t))
    return batch


def _build(path: pathlib.Path) -> int:
    """The database of the patient; returns how many readings it holds."""
    with Store.open(path, synchronous="NORMAL") as store:
        store.add_staff("DR1", "Physician", "physician")
        store.add_patient("P0", programmes=("AH", "DM1"), tz=TZ, physician="DR1", targets={"plan": {"cgm": 1}})
        for device, kind in (("CGM0", "cgm"), ("BP0", "bp"), ("GLU0", "glu")):
            store.add_device(device, kind)
            store.bind(device, "P0", 0)
        _, since, until = patient_period(store.report_patient("P0"), FIRST, END)
        batch = _readings(since, (END - FIRST).days)
        for start in range(0, len(batch), BATCH):
            part = batch[start:start + BATCH]
            t = int(part["t"][-1])
            result = store.commit_batch(part, now_ms=t, alerts=[{"patient": 0, "rule": "GLU_HIGH", "t": t,
                                                                 "late": False, "values": {"glu": 15.0}}])
            for alert in result.alerts:
                store.acknowledge_alert(alert["id"], by="DR1", at_ms=t + 10 * MINUTE_MS)
                store.resolve_alert(alert["id"], by="DR1", at_ms=t + 60 * MINUTE_MS)
        return store.count_readings()


def run(quick: bool) -> list[Result]:
    repeat = 3 if quick else 7
    with tempfile.TemporaryDirectory(dir=PROJECT_DIR, prefix=".bench-report-") as tmp:
        path = pathlib.Path(tmp) / "pmp.db"
        n = _build(path)
        with Store.open(path) as store:
            patient = store.report_patient("P0")
            _, since, until = patient_period(patient, FIRST, END)

            def protocol() -> dict:
                facts = store.report_patient("P0")
                return build_protocol(store.report_readings("P0", since, until), patient=facts, first=FIRST, end=END,
                                      bindings=store.report_bindings("P0", since, until),
                                      alerts=store.report_alerts("P0", since, until))

            result = protocol()
            seconds = best_seconds(protocol, repeat=repeat)
        conn = sqlite3.connect(path)
        for pragma in PRAGMAS:
            conn.execute(pragma)
        params = {"patient": 0, "since": since, "until": until}
        rows = len(conn.execute(REPORT_READINGS, params).fetchall())
        raw = best_seconds(lambda: conn.execute(REPORT_READINGS, params).fetchall(), repeat=repeat)
        conn.close()
    note = (f"{rows:,} readings of one patient in a year ({result['cgm']['n']:,} valid CGM, "
            f"{result['alerts']['total']} alerts), {n:,} in the database; Europe/Moscow local days")
    return [Result("report.protocol", "s", seconds, "raw SQL fetch of the same rows", raw, note=note)]
