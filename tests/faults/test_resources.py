"""Issue 6, item 4: a running gateway holds no more file descriptors or threads after many
batches and several broker restarts than it held after warm-up, its dedup table stays
within its bound, and what it stores is still exactly once.

``pmpgw run --broker`` with a dedup table of DEDUP_SLOTS slots, fed by
re-sending devices (``bench.faults.DeviceFleet``: duplicates, dumps, re-sends after a
reconnect); the broker is restarted RESTARTS times on the same port (every connection
drops), and after each restart a few devices re-send readings measured long before, whose
keys the table has evicted: they must come back from the store as duplicates. fds and
threads are read from /proc at two settled moments (fleet paused, every device acked): after
warm-up and at the end. Memory is asserted through what is deterministic, the dedup table's
capacity; RSS is printed (its figures are bench/soak.py's).

Threads on this machine: the trio loop (main), OpenBLAS's pool (cores - 1, started by
numpy's import) and the writer's worker (``trio.to_thread``, named after the job it runs).

PMP_FAULT_SEED (default 1).
"""

from __future__ import annotations

import os
import time

from bench.faults import DeviceFleet, GatewayProcess, check_exactly_once, register
from bench.faults_broker import RestartableBroker
from bench.faults_resources import resend_old, saved_stats, steady_sample

SEED = int(os.environ.get("PMP_FAULT_SEED", "1"))
DEVICES = 24
# 16,384 slots hold 8,192 keys: the fleet (~1,200 readings/s) passes that within ~7 s, and
# no batch comes near it (256 KiB of payloads, ~45 octets a reading, plus one message of at
# most 200: ~6,000 readings), so the table never has to grow past its bound for a batch.
DEDUP_SLOTS = 16_384
RESTARTS = 3
PHASE_S = 5.0  # seconds of generating between looks and restarts
GW_ID = "resources"


def settle(fleet: DeviceFleet, gateway: GatewayProcess):
    """Pause the fleet, wait until every device is acked, and look at the gateway."""
    fleet.stop_generating()
    assert fleet.wait_all_acked(60), f"{fleet.not_acked()} readings not acked:\n{gateway.tail()}"
    return steady_sample(gateway.process.pid)


def test_fds_threads_and_the_dedup_bound_hold_through_batches_and_broker_restarts(tmp_path):
    db = tmp_path / "pmp.db"
    names = [f"res-{i:03d}" for i in range(DEVICES)] + ["res-warm"]
    register(db, names)
    broker = RestartableBroker(tmp_path / "broker")
    fleet = DeviceFleet(broker.port, names, seed=SEED, p_new=1.0)
    gateway = GatewayProcess(broker.port, db, tmp_path / "pmpgw.log", GW_ID, ("--dedup-slots", str(DEDUP_SLOTS)))
    try:
        started = gateway.start()
        fleet.publish_one("res-warm")
        assert fleet.first_ack_after(started, 60) is not None, gateway.tail()
        fleet.start_generating()
        time.sleep(PHASE_S)  # warm-up: kernels, the writer's thread, the store's pages
        before = settle(fleet, gateway)
        for restart in range(RESTARTS):
            fleet.start_generating()
            time.sleep(PHASE_S)
            broker.stop(kill=False)
            broker.start()
            for device in names[restart * 4:(restart + 1) * 4]:
                resend_old(broker.port, fleet, device, range(100))  # measured in the warm-up
        fleet.start_generating()
        time.sleep(PHASE_S)
        after = settle(fleet, gateway)
        code = gateway.stop()
    finally:
        fleet.stop()
        if gateway.alive():
            gateway.process.kill()
            gateway.process.wait()
        broker.close()
    stats = saved_stats(db, GW_ID)
    check = check_exactly_once(db, fleet)
    print(f"after warm-up: {before.line()}\nat the end:    {after.line()}\ndedup: {stats['dedup']}\n"
          f"mqtt: {stats['mqtt']}\nreadings: {check.generated} generated, {check.stored} stored, counters "
          f"{check.counters}, messages {dict(fleet.counts)}")
    assert code == 0, gateway.tail()
    assert (check.lost, check.duplicated, check.wrong_values, check.violations) == (0, 0, 0, []), check.examples
    assert check.quarantined == {} and check.stored == check.generated
    assert stats["mqtt"]["connections"] == RESTARTS + 1  # every restart dropped the connection
    dedup = stats["dedup"]
    assert dedup["max_capacity"] == DEDUP_SLOTS and dedup["peak_capacity"] <= DEDUP_SLOTS
    assert dedup["horizon"] > fleet.t0_ms  # keys were evicted ...
    assert dedup["recalled_found"] > 0  # ... and re-sends of them found in the store
    assert after.n_fds <= before.n_fds, (before.fds, after.fds)
    assert after.n_threads <= before.n_threads, (before.threads, after.threads)
