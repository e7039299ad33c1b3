"""Issue 6, 1a: SIGKILL ``pmpgw run --broker`` at random moments while re-sending devices
publish (duplicates, re-sent dumps), restart it, and check the end-to-end effect is
exactly once: every generated reading stored once with its values, every crisis reading
linked to exactly one BP_CRISIS alert, every device acked. The machinery is
``bench.faults`` (also ``python -m bench --only faults_kill_restart``).

PMP_FAULT_CYCLES (default 5), PMP_FAULT_DEVICES (default 24), PMP_FAULT_SEED (default 1).
"""

from __future__ import annotations

import os

import numpy as np

from bench.faults import run_kill_restart, summary

CYCLES = int(os.environ.get("PMP_FAULT_CYCLES", "5"))
DEVICES = int(os.environ.get("PMP_FAULT_DEVICES", "24"))
SEED = int(os.environ.get("PMP_FAULT_SEED", "1"))


def test_kill_restart_exactly_once(broker, tmp_path):
    run = run_kill_restart(broker.port, tmp_path, devices=DEVICES, cycles=CYCLES, seed=SEED,
                           budget_s=max(40.0, 8.0 * CYCLES))
    print(summary(run))
    check, outcome = run.check, run.outcome
    assert outcome.cycles == CYCLES or outcome.seconds > 40.0
    assert check.generated > 0 and outcome.recovery_s
    assert check.violations == []
    assert (check.lost, check.duplicated, check.wrong_values) == (0, 0, 0), check.examples
    assert check.stored == check.generated
    assert check.crisis_readings > 0
    assert (check.crisis_not_alerted, check.crisis_alerted_twice, check.alerted_not_crisis) == (0, 0, 0), \
        check.examples
    assert check.crisis_alert_rows_extra == 0 and check.occurrences_mismatch == 0, check.examples
    assert check.quarantined == {}, check.counters
    assert check.counters["stored"] == check.generated
    assert np.isfinite(outcome.recovery_s).all()


def test_a_resend_of_acked_readings_is_acked_again(tmp_path):
    """Regression (found by the kill/restart run): a device or hub that missed its ack (it was
    offline when the ack went out, or the gateway died between commit and publish) re-sends
    what is stored already; the gateway must say the current ack again, or the publisher
    re-sends forever and never purges until it measures something new."""
    import msgpack

    from adapters import gatt_encode as enc
    from adapters.mqtt import Received
    from gateway.clock import now_ms
    from gateway.ingest import Ingest
    from gateway.store import Store

    now = now_ms()
    bp = [{"seq": s, "t": now - 10_000 + s, "type": "bp", "sys": 120, "dia": 80} for s in range(3)]
    record = {"dev": "AA:BB:CC:DD:EE:01", "uuid": 0x2A35, "rx": now - 500, "tz": 0, "hseq": 7,
              "val": enc.blood_pressure(enc.sfloat(120), enc.sfloat(80), enc.sfloat(93))}
    with Store.open(tmp_path / "pmp.db") as store:
        store.add_patient("P1", tz="UTC")
        store.add_device("tono-1", "bp")
        store.bind("tono-1", "P1", 0)
        store.add_device("hub-1", "hub")
        ingest = Ingest(store)
        dev = Received("pmp/v1/dev/tono-1/m", msgpack.packb(bp), 1, 1, 1, now)
        hub = Received("pmp/v1/hub/hub-1/gatt", msgpack.packb([record]), 2, 1, 1, now)
        first = ingest.process([dev, hub], now)
        assert first.publications == [("pmp/v1/dev/tono-1/ack", b'{"seq": 2}'),
                                      ("pmp/v1/hub/hub-1/ack", b'{"hseq": 7}')]
        resent = Ingest(store).process([Received(dev.topic, dev.payload, 3, 1, 1, now), hub], now)  # a restart, too
        assert resent.result.duplicate == 3 and resent.result.stored == 0  # (the BLE meter is unbound)
        assert resent.publications == first.publications
        gap = Received("pmp/v1/dev/tono-1/m", msgpack.packb({**bp[0], "seq": 9}), 4, 1, 1, now)
        assert ingest.process([gap], now).publications == []  # above a gap: nothing new to say
