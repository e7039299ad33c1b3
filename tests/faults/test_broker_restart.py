"""Issue 6, 1b: restart the broker (SIGTERM and SIGKILL, persistence on) during ingest. With
devices that keep readings until the gateway's ack and re-send, nothing is lost even though a
SIGKILLed broker loses what it had not saved; the one ``pmpgw run --broker`` process
reconnects by itself each time, and its persistent session survives: readings published
once while it was away (frozen), even across a second restart, reach it. The machinery is
``bench.faults_broker`` (also ``python -m bench --only faults_broker_restart``).

PMP_BROKER_OUTAGES (default 5), PMP_FAULT_DEVICES (default 24), PMP_FAULT_SEED (default 1).
"""

from __future__ import annotations

import os

from bench.faults_broker import run_broker_restart, summary

OUTAGES = int(os.environ.get("PMP_BROKER_OUTAGES", "5"))
DEVICES = int(os.environ.get("PMP_FAULT_DEVICES", "24"))
SEED = int(os.environ.get("PMP_FAULT_SEED", "1"))
BUDGET_S = max(45.0, 9.0 * OUTAGES)


def test_broker_restarts_lose_nothing_and_the_gateway_resumes_its_session(tmp_path):
    run = run_broker_restart(tmp_path, devices=DEVICES, outages=OUTAGES, seed=SEED, budget_s=BUDGET_S)
    print(summary(run))
    check, outcome = run.check, run.outcome
    assert len(outcome.outages) == OUTAGES or outcome.seconds > BUDGET_S
    kinds = {(o.signal, o.frozen, o.requeued) for o in outcome.outages}
    if OUTAGES >= 4:  # the kinds every run covers first
        assert {("term", True, True), ("kill", False, False), ("term", False, False), ("kill", True, False)} <= kinds
    assert outcome.gateway_starts == 1  # never restarted: it reconnected by itself
    assert outcome.stats["state"] == "down"  # drained at the end, as a live process
    assert outcome.stats["mqtt"]["connections"] == 1 + len(outcome.outages)
    frozen = [o for o in outcome.outages if o.frozen]
    # Readings published while the gateway was away reach it through its session, or, when
    # Mosquitto 2.0.11 lost the session it restored (seen now and then: the summary counts
    # it), through the device's re-send: either way each is stored once (below). A session
    # resumed across a restart is proven alone in tests/adapters/test_mqtt.py.
    assert frozen and all(o.probe > 0 for o in frozen)
    assert check.violations == []
    assert (check.lost, check.duplicated, check.wrong_values) == (0, 0, 0), check.examples
    assert check.generated > 0 and check.stored == check.generated == check.counters["stored"]
    assert check.crisis_readings > 0
    assert (check.crisis_not_alerted, check.crisis_alerted_twice, check.alerted_not_crisis) == (0, 0, 0), \
        check.examples
    assert check.crisis_alert_rows_extra == 0 and check.occurrences_mismatch == 0, check.examples
    assert check.quarantined == {}, check.counters
