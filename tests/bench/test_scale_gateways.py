"""bench.scale_gateways at a tiny size: one gateway on SQLite and two ``pmpgw run --shared``
on one PostgreSQL database, a real private Mosquitto and publisher processes; every
published reading committed exactly once, and the figures' shape (no timing assertions)."""

import math

from bench.scale_gateways import GROUPS, Sizes, describe, measure_all, results

TINY = Sizes(devices=4, messages=15, backlogs=1, single_messages=20, gateways=(2,))  # 3,000 + 80 readings


def test_two_shared_gateways_commit_every_published_reading_once(tmp_path, pg_cluster):
    sqlite, shared = measure_all(TINY, tmp_path, pg_cluster, timeout_s=60.0, per_reading=True)
    for run in (sqlite, shared):
        a = run.accounting
        print(describe(run))
        assert a.published == 4 * 15 * 50 + 4 * 20 + run.gateways * 4 * 50  # backlogs and the warm-up
        assert a.missing == 0 and a.twice == 0
        assert a.received == a.stored == a.rows == a.published and a.duplicate == 0 and a.quarantined == {}
        assert a.ok
        assert [b.readings for b in run.batched.backlogs] == [3_000]
        assert [b.readings for b in run.single.backlogs] == [80]
        for phase in (run.batched, run.single):
            assert set(phase.cpu_s) == set(GROUPS) and all(s >= 0 for s in phase.cpu_s.values())
            assert len(phase.per_gateway_s) == run.gateways
    assert (sqlite.gateways, sqlite.database, shared.gateways, shared.database) == (1, "sqlite", 2, "postgresql")
    figures = results(TINY, [sqlite, shared])
    assert [(f.name, f.unit, f.baseline) for f in figures] == [
        ("scale.gateways_2", "readings/s", "1 gateway on SQLite"),
        ("scale.gateways_2_single", "readings/s", "1 gateway on SQLite")]
    assert (figures[0].value, figures[0].baseline_value) == (shared.batched.rate, sqlite.batched.rate)
    assert (figures[1].value, figures[1].baseline_value) == (shared.single.rate, sqlite.single.rate)
    assert all(math.isfinite(f.ratio) and "postgresql" in f.note for f in figures)
