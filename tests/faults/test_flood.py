"""Issue 6, 1d: one device floods at 100 times the normal rate of the others. Every reading,
the flooder's too, is stored exactly once and acked; the flooder, and only it, is reported
in the stats JSON (``flooding``, shown by ``pmpgw status``) and as a DEVICE task ``flood``
that the gateway resolves once the flood is over. The others' publish -> ack latency with
and without the flood is printed (speed is measured by ``python -m bench --only
faults_flood``, against a gateway process with its default settings).

The gateway runs in-process with a 3-second flood window (limit 20 messages/s) and a sweep
every second, so the whole flood fits in a few seconds. PMP_FLOOD_DEVICES (default 8).
"""

from __future__ import annotations

import os

from bench.faults_flood import FLOODER, run_flood, summary
from gateway.flood import FloodSettings
from gateway.service import ServiceSettings
from gateway.store import Store

DEVICES = int(os.environ.get("PMP_FLOOD_DEVICES", "8"))
RATE = 2.0  # messages/s of a normal device; the flooder sends 100 times that
SETTINGS = ServiceSettings(gw_id="flood", stats_interval_s=0.25, sweep_interval_s=1.0,
                           flood=FloodSettings(msgs_per_s=20.0, window_s=3.0, buckets=3))


def test_a_flooding_device_is_reported_alone_and_every_reading_is_stored_once_and_acked(broker, tmp_path):
    run = run_flood(broker.port, tmp_path, normal=DEVICES, rate=RATE, baseline_s=4.0, flood_s=5.0,
                    gateway_settings=SETTINGS, wait_task_s=20.0, wait_clear_s=20.0)
    print(summary(run))
    print(run.view)
    check = run.check
    assert check.violations == [] and check.quarantined == {}, check.counters
    assert (check.lost, check.duplicated, check.wrong_values) == (0, 0, 0), check.examples
    assert check.stored == check.generated == check.counters["stored"]
    assert check.ok, check.examples  # crisis readings each alerted once, the flooder's too
    assert len(run.baseline) and len(run.flooded)  # every normal device's readings were acked: latencies of both
    assert run.flood_rate > 20 * run.normal_rate  # it did flood (the driver thread's ticks bound the multiplier)
    assert run.stats_reported == [FLOODER] and FLOODER in run.view and "msg/s" in run.view
    assert run.tasked == [FLOODER] and run.cleared_after_s is not None
    with Store.open(tmp_path / "pmp.db") as store:
        device_tasks = [a for a in store.alerts(severity="task") if a["rule"] == "DEVICE"]
    flood_tasks = [a for a in device_tasks if any("flood" in p for p in a["values"]["devices"].values())]
    (task,) = flood_tasks
    assert (task["patient"], task["values"]["devices"], task["state"]) == ("P" + FLOODER, {FLOODER: ["flood"]},
                                                                           "resolved")
    assert task["values"]["figures"][FLOODER]["msgs_per_s"] > SETTINGS.flood.msgs_per_s
