"""Issue 7: two ``pmpgw run --broker`` processes on one PostgreSQL database while re-sending
devices publish, both receiving every message (no shared subscription), or in the shared
subscription group with one SIGKILLed and restarted: the database keeps every reading once
and one alert per (patient, rule). The machinery is
``bench.faults_shared_store`` (also ``python -m bench --only faults_shared_store``).

PMP_FAULT_DEVICES (default 24), PMP_SHARED_SECONDS (default 6).
"""

from __future__ import annotations

import os

import pytest

from bench.faults_shared_store import run_shared_store, summary

DEVICES = int(os.environ.get("PMP_FAULT_DEVICES", "24"))
SECONDS = float(os.environ.get("PMP_SHARED_SECONDS", "6"))


@pytest.mark.parametrize("shared", [False, True], ids=["both-get-every-message", "shared-group-one-killed"])
def test_two_gateways_on_one_database_store_and_alert_each_reading_once(broker, pg_url, tmp_path, shared):
    """Both gateways receiving every message; or, issue 7 item 3, both in the shared group
    (each message to one of them; re-sent dumps and duplicates land on either) with the
    second SIGKILLed halfway and restarted. Every reading stored once, every crisis alerted
    once, every device acked in the end: with --shared each device's ack is advanced by the
    store over what both gateways committed (the summary prints how long after the end, and
    the re-sends)."""
    run = run_shared_store(broker.port, pg_url, tmp_path, devices=DEVICES, generate_s=SECONDS, shared=shared,
                           kill_one=shared)
    print(summary(run))
    check = run.check
    assert run.acked and run.exits == [0, 0]
    assert check.generated > 0 and check.violations == []
    assert (check.lost, check.duplicated, check.wrong_values) == (0, 0, 0), check.examples
    assert check.stored == check.generated == check.counters["stored"]
    assert check.crisis_readings > 0
    assert (check.crisis_not_alerted, check.crisis_alerted_twice, check.alerted_not_crisis) == (0, 0, 0), \
        check.examples
    assert check.crisis_alert_rows_extra == 0 and check.occurrences_mismatch == 0, check.examples
    assert check.quarantined == {}, check.counters
    if not shared:
        # Each gateway received every message (each counts every row it got), and each
        # reading was stored by one of them: the other's copy was the store's duplicate.
        assert check.counters["received"] >= 2 * check.generated
        assert check.counters["duplicate"] >= check.generated
