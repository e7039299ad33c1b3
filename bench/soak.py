"""soak: does a gateway under steady load keep its memory, file descriptors and threads flat?

soak.rss      VmRSS (MiB) of ``pmpgw run`` at the end of the measured phase of a steady
              stream; baseline: at its start, after a warm-up phase of the same stream.
              The note gives RSS when ready (idle), the highest RSS sampled in the measured
              phase and VmHWM (the process's peak since it started).
soak.fds      open file descriptors at the end; baseline: at the start.
soak.threads  threads at the end; baseline: at the start.

The stream: bench.publishers processes pacing msgpack arrays of 50 BP reading maps at QoS 1
through a private Mosquitto into ``pmpgw run --broker`` (this checkout, its own process),
with a dedup table bound (``--dedup-slots``) the warm-up passes, so the measured phase runs
with the table full and evicting. What else grows by design, and its bound: SQLite's page
cache (``PRAGMA cache_size``: 128 MiB, filled as the database grows past it: about 1.1
million readings), and nothing else that the stream can drive. /proc is read every
SAMPLE_S; fds and threads at start and end are the most frequent of five looks
(``bench.faults_resources.steady_sample``). Every reading published must be acked, i.e.
committed, at the end.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import tempfile
import time

from bench._harness import Result
from bench.e2e_ingest import HOUR_MS, Observer, _now_ms, _publisher_summary, committed_counters, register, warm_up
from bench.faults import PROJECT_DIR, GatewayProcess
from bench.faults_resources import ProcessSample, sample, saved_stats, steady_sample
from bench.publishers import STEP_MS, Publishers
from gateway.broker import PrivateBroker

BATCH_READINGS = 50  # readings per message
PROCESSES = 2  # publisher processes
DEVICES = 32
SAMPLE_S = 0.5
GW_ID = "soak"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Phases in seconds, the stream in messages/s, the dedup bound in slots (32 bytes)."""

    warmup_s: float
    measure_s: float
    rate: float
    dedup_slots: int


# Full: the warm-up (1.2 million readings) fills SQLite's page cache and the dedup table
# (2**20 slots, 524,288 keys, 32 MiB) before the start; quick: only the table (2**17).
QUICK = Sizes(warmup_s=4.0, measure_s=6.0, rate=800.0, dedup_slots=1 << 17)
FULL = Sizes(warmup_s=30.0, measure_s=30.0, rate=800.0, dedup_slots=1 << 20)


@dataclasses.dataclass(frozen=True)
class Soak:
    ready: ProcessSample  # after the first ack, before the stream
    start: ProcessSample  # after the warm-up
    end: ProcessSample
    measured_max_rss_mib: float  # the highest VmRSS sampled in the measured phase
    committed: dict[str, int]  # readings stored by the end of each phase ("warm-up", "end")
    published: int  # readings the broker acked from the publishers
    seconds: float  # from the first publish until every device was acked
    dedup: dict


def soak(sizes: Sizes, tmp: pathlib.Path) -> Soak:
    """One run: broker, gateway, warm-up, measured phase, every device acked, drain."""
    devices = [f"soak-{i:03d}" for i in range(DEVICES)]
    db = tmp / "pmp.db"
    register(db, devices + ["warm-0"])
    total_s = sizes.warmup_s + sizes.measure_s
    per_device = int(sizes.rate * total_s / DEVICES) + 1
    broker = PrivateBroker.start(tmp / "broker")
    try:
        observer = Observer(broker.port, [])
        gateway = GatewayProcess(broker.port, db, tmp / "pmpgw.log", GW_ID, ("--dedup-slots", str(sizes.dedup_slots)))
        try:
            gateway.start()
            warm_up(observer, gateway, "warm-0", 60.0)
            pid = gateway.process.pid
            ready = steady_sample(pid)
            with Publishers(broker.port, devices, processes=PROCESSES, messages_per_device=per_device,
                            per_message=BATCH_READINGS, t0_ms=_now_ms() - per_device * BATCH_READINGS * STEP_MS
                            - HOUR_MS, rate=sizes.rate,
                            timeout_s=total_s + 60, name="soak") as pubs:
                began = pubs.go()
                _wait_until(began + sizes.warmup_s, pid)
                start = steady_sample(pid)
                committed = {"warm-up": committed_counters(db).get("stored", 0)}
                measured = _wait_until(began + total_s, pid)
                end = steady_sample(pid)
                summary = _publisher_summary(pubs.results(), began)  # the stream lasts warm-up + measured
                acked = observer.all_acked(summary["last_seq"], 120.0)
            if gateway.stop() != 0:
                raise RuntimeError(f"pmpgw run did not drain and exit 0:\n{gateway.tail()}")
        finally:
            observer.stop()
            if gateway.alive():
                gateway.process.kill()
                gateway.process.wait()
    finally:
        broker.stop()
    counters = committed_counters(db)
    committed["end"] = counters.get("stored", 0)
    return Soak(ready=ready, start=start, end=end, measured_max_rss_mib=max(s.rss_mib for s in measured + [end]),
                committed=committed, published=summary["messages"] * BATCH_READINGS, seconds=acked - began,
                dedup=saved_stats(db, GW_ID)["dedup"])


def _wait_until(deadline: float, pid: int) -> list[ProcessSample]:
    """Sample the process every SAMPLE_S until ``deadline`` (monotonic)."""
    samples = []
    while time.monotonic() < deadline:
        samples.append(sample(pid))
        time.sleep(max(0.0, min(SAMPLE_S, deadline - time.monotonic())))
    return samples


def run(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(dir=PROJECT_DIR, prefix=".bench-soak-") as tmp:
        s = soak(sizes, pathlib.Path(tmp))
    if s.committed["end"] != s.published + 1:
        raise RuntimeError(f"bench: soak stored {s.committed['end']:,} of {s.published + 1:,} readings")
    print(f"soak: ready {s.ready.line()}\n      start {s.start.line()}\n      end   {s.end.line()}\n"
          f"      dedup {s.dedup}", file=sys.stderr)
    setting = (f"`pmpgw run --broker --dedup-slots {sizes.dedup_slots:,}` (this checkout, own process) fed "
               f"{sizes.rate * BATCH_READINGS:,.0f} readings/s ({PROCESSES} bench.publishers processes, {DEVICES} "
               f"devices, msgpack arrays of {BATCH_READINGS}, QoS 1, private Mosquitto): warm-up "
               f"{sizes.warmup_s:.0f} s "
               f"({s.committed['warm-up']:,} readings stored), then measured {sizes.measure_s:.0f} s; "
               f"{s.committed['end']:,} readings stored in all, every device acked {s.seconds:.1f} s after the first "
               f"publish; dedup table at the end: {s.dedup['keys']:,} keys in {s.dedup['capacity']:,} slots (peak "
               f"{s.dedup['peak_capacity']:,}), {s.dedup['recalled']:,} records looked up in the store")
    memory = (f"RSS MiB: ready {s.ready.rss_mib:.0f}, start {s.start.rss_mib:.0f}, end {s.end.rss_mib:.0f}, highest "
              f"sampled in the measured phase {s.measured_max_rss_mib:.0f}, VmHWM (peak since start) "
              f"{s.end.hwm_mib:.0f}; SQLite's page cache is bounded at 128 MiB (PRAGMA cache_size); {setting}")
    return [
        Result("soak.rss", "MiB", s.end.rss_mib, "RSS at the start (after warm-up)", s.start.rss_mib, note=memory),
        Result("soak.fds", "fds", float(s.end.n_fds), "fds at the start", float(s.start.n_fds),
               note=f"start {s.start.fds}, end {s.end.fds}; {setting}"),
        Result("soak.threads", "threads", float(s.end.n_threads), "threads at the start",
               float(s.start.n_threads), note=f"start {s.start.threads}, end {s.end.threads} (the trio loop, "
                                              f"OpenBLAS's pool of cores - 1, the writer's worker); {setting}"),
    ]
