"""The bench harness: ratios, the table, the JSON schema; the seeded fleet."""

import json

import numpy as np

from bench._harness import Result, table, write_json
from bench.fleet import make_fleet
from core.codes import Kind


def test_ratio_is_value_over_baseline_value():
    assert Result("x", "readings/s", 50.0, "twin", 2.0).ratio == 25.0


def test_table_and_json(tmp_path):
    results = [Result("core.pipeline", "readings/s", 5_000_000.0, "pure-Python twin", 10_000.0, note="n")]
    assert "| core.pipeline | 5,000,000 | readings/s | pure-Python twin | 10,000 | 500 |" in table(results)
    path = tmp_path / "latest.json"
    write_json(results, path)
    payload = json.loads(path.read_text())
    assert set(payload) == {"machine", "results"}
    assert payload["results"][0]["ratio"] == 500.0
    assert {"name", "unit", "value", "baseline", "baseline_value", "ratio"} <= set(payload["results"][0])


def test_fleet_is_reproducible_and_mixed():
    a, b = make_fleet(10_000, 100, seed=5), make_fleet(10_000, 100, seed=5)
    assert a.batch.tobytes() == b.batch.tobytes()
    kinds = np.bincount(a.batch["kind"], minlength=4)
    assert kinds[Kind.BP] > 0 and kinds[Kind.GLU] > 0 and kinds[Kind.CGM] > 0
    assert len(a.batch) == 10_000
    assert len(np.unique(a.batch[["device", "seq", "fingerprint"]])) < len(a.batch)  # re-sent readings
