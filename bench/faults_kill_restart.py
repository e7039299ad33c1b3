"""faults.kill_restart: does the gateway store every reading exactly once when it is killed
with SIGKILL at random moments and restarted, while devices publish and re-send?

faults.kill_restart           lost + duplicated readings (must be 0) of everything the
                              simulated devices generated, after a final restart with every
                              device acked; baseline: the readings generated (ratio 0 = none
                              lost or doubled). Crisis readings must each be linked to
                              exactly one BP_CRISIS alert: a broken alert check raises.
faults.kill_restart.recovery  p50 seconds from a restarted ``pmpgw run`` process's start to
                              its first device ack; baseline: the first start on an empty
                              store, the same way.

Machinery (devices that keep every reading until acked and re-send after a timeout or a
reconnect, plain duplicates and re-sent dumps, the seeded kill/restart loop, the check):
``bench.faults``, shared with tests/faults/test_kill_restart.py.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

import numpy as np

from bench._harness import Result
from bench.faults import PROJECT_DIR, run_kill_restart, summary
from gateway.broker import PrivateBroker

QUICK = {"devices": 24, "cycles": 6, "budget_s": 60.0}
FULL = {"devices": 96, "cycles": 25, "budget_s": 240.0}
SEED = 1


def run(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(dir=PROJECT_DIR, prefix=".bench-faults-") as tmp:
        broker = PrivateBroker.start(pathlib.Path(tmp) / "broker")
        try:
            fault = run_kill_restart(broker.port, pathlib.Path(tmp), seed=SEED, **sizes)
        finally:
            broker.stop()
    print(summary(fault), file=sys.stderr)
    c, o = fault.check, fault.outcome
    alerts = (c.crisis_not_alerted, c.crisis_alerted_twice, c.alerted_not_crisis, c.crisis_alert_rows_extra,
              c.occurrences_mismatch)
    if any(alerts) or c.violations or c.quarantined:
        raise RuntimeError(f"bench: kill/restart broke the alerts or acks: {summary(fault)}; {c.examples}; "
                           f"{c.violations[:5]}")
    rec = np.array(o.recovery_s)
    setting = (f"{sizes['devices']} simulated tonometers on 4 paho connections (re-send un-acked after 1.5 s and "
               f"on reconnect, 20% of acks missed; 5% of messages sent twice, 3% of arrays repeating a map, dumps "
               f"of the last 30 readings), "
               f"{o.cycles} SIGKILLs of `pmpgw run --broker` at seeded random moments ({o.startup_kills} before "
               f"its first ack), private Mosquitto; {c.generated:,} readings generated, {c.stored:,} stored, "
               f"{c.counters['duplicate']:,} duplicates dropped, {c.crisis_readings} crisis readings each "
               f"alerted once; {o.seconds:.0f} s")
    return [
        Result("faults.kill_restart", "readings", float(c.lost + c.duplicated), "readings generated",
               float(c.generated), note=f"lost {c.lost}, duplicated {c.duplicated}, wrong values "
                                        f"{c.wrong_values}; {setting}"),
        Result("faults.kill_restart.recovery", "s", float(np.median(rec)), "first start, empty store",
               o.first_start_s, note=f"start of a restarted gateway process to its first device ack, p50 of "
                                     f"{len(rec)} restarts, max {rec.max():.2f} s; {setting}"),
    ]
