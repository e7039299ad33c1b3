"""faults.broker_restart: is every reading stored exactly once when the broker is restarted
(SIGTERM and SIGKILL, persistence on) during ingest, with one gateway process throughout?

faults.broker_restart            lost + duplicated readings (must be 0) of everything the
                                 simulated devices generated, once every device is acked;
                                 baseline: the readings generated (ratio 0 = none lost or
                                 doubled). A gateway that exits, does not reconnect, loses its
                                 session (probe readings published while it was away never
                                 arrive), misses a connection or breaks an alert raises.
faults.broker_restart.reconnect  p50 seconds from the broker accepting connections again (a
                                 frozen outage: from the gateway continuing) to the gateway's
                                 ``online``; baseline: the device connections' reconnect p50
                                 (stock paho, 1 s backoff), the same outages.

Machinery (the restartable broker, the probe fleet, the state watcher, the loop, the check):
``bench.faults_broker``, shared with tests/faults/test_broker_restart.py.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

import numpy as np

from bench._harness import Result
from bench.faults import PROJECT_DIR
from bench.faults_broker import run_broker_restart, summary

QUICK = {"devices": 24, "outages": 6, "budget_s": 60.0}
FULL = {"devices": 96, "outages": 20, "budget_s": 240.0}
SEED = 1


def run(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(dir=PROJECT_DIR, prefix=".bench-broker-") as tmp:
        fault = run_broker_restart(pathlib.Path(tmp), seed=SEED, **sizes)
    print(summary(fault), file=sys.stderr)
    c, o = fault.check, fault.outcome
    alerts = (c.crisis_not_alerted, c.crisis_alerted_twice, c.alerted_not_crisis, c.crisis_alert_rows_extra,
              c.occurrences_mismatch)
    connections = o.stats.get("mqtt", {}).get("connections")
    if any(alerts) or c.violations or c.quarantined or o.gateway_starts != 1 or connections != 1 + len(o.outages):
        raise RuntimeError(f"bench: broker restarts broke the alerts, acks or the gateway's connection count: "
                           f"{summary(fault)}; {c.examples}; {c.violations[:5]}")
    gateway = np.array([x.gateway_s for x in o.outages])
    devices = np.array([x.devices_s for x in o.outages])
    restarts = o.restarts
    setting = (f"{sizes['devices']} simulated tonometers on 4 paho connections (re-send un-acked after 1.5 s and "
               f"on reconnect, 20% of acks missed, duplicates and dumps as faults.kill_restart), one `pmpgw run "
               f"--broker` process throughout; private Mosquitto (persistence, saved every 1 s) restarted "
               f"{restarts['term']} times after SIGTERM and {restarts['kill']} after SIGKILL in {len(o.outages)} "
               f"outages ({sum(x.frozen for x in o.outages)} with the gateway frozen and probe readings delivered "
               f"by its session, {sum(x.requeued for x in o.outages)} of them across a second restart, the session "
               f"lost there {sum(not x.session_kept for x in o.outages)} times); "
               f"{c.generated:,} readings generated, {c.stored:,} stored, {c.counters['duplicate']:,} duplicates "
               f"dropped, {c.crisis_readings} crisis readings each alerted once; mqtt.connections {connections}; "
               f"{o.seconds:.0f} s")
    return [
        Result("faults.broker_restart", "readings", float(c.lost + c.duplicated), "readings generated",
               float(c.generated), note=f"lost {c.lost}, duplicated {c.duplicated}, wrong values "
                                        f"{c.wrong_values}; {setting}"),
        Result("faults.broker_restart.reconnect", "s", float(np.median(gateway)), "device connections (paho)",
               float(np.median(devices)),
               note=f"broker back to the gateway's online, p50 of {len(gateway)} outages, max {gateway.max():.2f} s; "
                    f"devices max {devices.max():.2f} s; {setting}"),
    ]
