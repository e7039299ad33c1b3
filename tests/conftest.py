"""Shared fixtures: ``impl`` runs a core test on both implementations, ``db`` a store test on both
databases (SQLite, PostgreSQL of a private cluster)."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, settings

import core.compiled
import core.reference

# Differential tests (compiled vs twin) run a few thousand examples each; PMP_HYPOTHESIS_EXAMPLES
# raises or lowers that for a long local run or a quick look.
DIFFERENTIAL_EXAMPLES = int(os.environ.get("PMP_HYPOTHESIS_EXAMPLES", "2000"))

settings.register_profile(
    "pmp",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("pmp")

differential = settings(max_examples=DIFFERENTIAL_EXAMPLES)

IMPLEMENTATIONS = {"compiled": core.compiled, "reference": core.reference}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def impl(request):
    """``core.compiled`` or ``core.reference``: the same test runs on both."""
    return IMPLEMENTATIONS[request.param]


@pytest.fixture
def broker(tmp_path):
    """A real private Mosquitto on 127.0.0.1 (the gateway's own config), stopped afterwards."""
    from gateway.broker import PrivateBroker

    running = PrivateBroker.start(tmp_path / "broker")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def pg_cluster():
    """A private PostgreSQL cluster (bench.pg_cluster) for the session, stopped and removed
    afterwards, with a database ``pmp_template`` already at the newest schema."""
    from bench.pg_cluster import PrivateCluster
    from gateway.store import Store

    cluster = PrivateCluster.start()
    try:
        Store.open(cluster.create_database(PG_TEMPLATE)).close()
        yield cluster
    finally:
        cluster.stop()


PG_TEMPLATE = "pmp_template"
_pg_databases = itertools.count()


@pytest.fixture
def pg_url(pg_cluster):
    """The URL of a new PostgreSQL database at the newest schema, dropped afterwards."""
    import psycopg

    name = f"pmp_test_{next(_pg_databases)}"
    yield pg_cluster.create_database(name, template=PG_TEMPLATE)
    with psycopg.connect(pg_cluster.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path, monkeypatch) -> str:
    """``--db`` of a new store: an SQLite file in tmp_path, or a new PostgreSQL database of
    the session's private cluster (its data directory, $PMP_DATA_DIR, in tmp_path); a test
    taking it runs on both."""
    if request.param == "sqlite":
        return str(tmp_path / "pmp.db")
    monkeypatch.setenv("PMP_DATA_DIR", str(tmp_path))
    return request.getfixturevalue("pg_url")
