"""Shared fixtures: the ``impl`` fixture runs a core test on both implementations."""

from __future__ import annotations

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
