"""faults.disk_full: does the gateway lose or double anything when its disk fills, and how
soon does it resume once space returns?

faults.disk_full           lost + duplicated readings (must be 0) of everything the simulated
                           devices generated, after the disk filled under a running
                           ``pmpgw run --broker`` and space returned; baseline: the readings
                           generated (ratio 0 = none lost or doubled). Broken alerts or acks
                           (an ack while the disk was full, a crisis not alerted once) raise.
faults.disk_full.resume    seconds from the filler's removal to the gateway's first device
                           ack; baseline: the gateway's first start on an empty store to its
                           first ack.

The experiment (also ``tests/faults/test_disk_full.py``): the database and its WAL on a small
tmpfs of its own; re-sending devices (``bench.faults.DeviceFleet``) publish; a filler file
takes every free byte of the tmpfs, so SQLite's next write fails (SQLITE_FULL, "database or
disk is full"); the gateway must then hold every ack back, stay up, say why (DISK_FULL with
the database and its free bytes) in its retained stats, in ``pmpgw status --json`` and once in
its log; the filler goes, and the gateway resumes by itself. Needs root (``mount -t tmpfs``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import paho.mqtt.client as paho

from bench._harness import Result
from bench.faults import HOST, PROJECT_DIR, Check, DeviceFleet, GatewayProcess, check_exactly_once, register
from gateway.store import Store

TMPFS_BYTES = 32 << 20  # the database's own file system; the filler takes what the database leaves
REFUSED_LOG = "store refuses writes: "  # gateway.store_health's log line when an episode starts
RESUMED_LOG = "store accepts writes again"  # ... and when it ends
QUICK = {"devices": 24, "run_before_s": 2.0, "full_hold_s": 4.0}
FULL = {"devices": 96, "run_before_s": 5.0, "full_hold_s": 15.0}
SEED = 1


class MountRefused(RuntimeError):
    """``mount -t tmpfs`` is not permitted here (not root, or in a container without CAP_SYS_ADMIN)."""


@contextlib.contextmanager
def tmpfs(path: pathlib.Path, size_bytes: int = TMPFS_BYTES) -> Iterator[pathlib.Path]:
    """A tmpfs of ``size_bytes`` mounted on the directory ``path`` (created), unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode:
        raise MountRefused(f"mount -t tmpfs on {path} failed ({done.returncode}): {done.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)  # lazily, once the last user lets go


def fill(directory: pathlib.Path) -> pathlib.Path:
    """Write a file in ``directory`` until its file system has no byte left (ENOSPC); return it."""
    filler = directory / "filler"
    chunk = b"\0" * 65_536
    with filler.open("wb", buffering=0) as out:
        while chunk:
            try:
                out.write(chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                chunk = chunk[: len(chunk) // 2]  # the last pages, ever smaller writes
    return filler


class StatsWatcher:
    """The gateway's retained stats (``pmp/v1/gateway/{gw}/stats``) as they arrive (a paho thread)."""

    def __init__(self, port: int, gw_id: str) -> None:
        self.topic = f"pmp/v1/gateway/{gw_id}/stats"
        self.changed = threading.Condition()
        self.history: list[tuple[float, dict]] = []  # (monotonic receipt time, stats)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"disk-full-watch-{time.time_ns()}",
                                  protocol=paho.MQTTv311)
        self.client.on_connect = lambda c, userdata, flags, reason, properties: c.subscribe(self.topic, qos=0)
        self.client.on_message = self._on_message
        self.client.connect(HOST, port)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        with self.changed:
            self.history.append((time.monotonic(), json.loads(message.payload)))
            self.changed.notify_all()

    def wait_for(self, wanted: Callable[[dict], bool], after: float, timeout_s: float) -> tuple[float, dict] | None:
        """The first stats received after monotonic ``after`` for which ``wanted`` holds (None within ``timeout_s``)."""
        def found():
            return next(((t, s) for t, s in self.history if t > after and wanted(s)), None)
        with self.changed:
            self.changed.wait_for(found, timeout_s)
            return found()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def gateway_process(port: int, db: pathlib.Path, log: pathlib.Path) -> GatewayProcess:
    """``pmpgw run`` as ``python -m gateway.cli`` from PROJECT_DIR: the code of this checkout
    (an installed ``pmpgw`` script may import another one)."""
    gateway = GatewayProcess(port, db, log, gw_id="diskfull")
    gateway.command = [sys.executable, "-m", "gateway.cli"]
    return gateway


def status_json(port: int, db: pathlib.Path, wanted: Callable[[dict], bool], timeout_s: float) -> tuple[dict, int]:
    """``pmpgw status --json --broker 127.0.0.1:PORT --db DB`` run as a process, parsed, until
    ``wanted`` holds or ``timeout_s`` passed (its live probe of the broker is short, and a
    busy machine can make it miss; status then shows the stats saved before the disk
    filled); the last output and the number of runs."""
    deadline = time.monotonic() + timeout_s
    runs = 0
    while True:
        done = subprocess.run([sys.executable, "-m", "gateway.cli", "status", "--json", "--broker", f"{HOST}:{port}",
                               "--db", str(db)], capture_output=True, text=True, cwd=PROJECT_DIR, timeout=timeout_s)
        runs += 1
        if done.returncode:
            raise RuntimeError(f"pmpgw status --json exited {done.returncode}: {done.stderr}")
        status = json.loads(done.stdout)
        if wanted(status) or time.monotonic() > deadline:
            return status, runs
        time.sleep(0.5)


def refusing_batches(stats: dict) -> bool:
    """Whether gateway ``stats`` (or ``pmpgw status --json``) say the store refuses batches: DISK_FULL."""
    fault = stats.get("store_fault") or {}
    return fault.get("reason") == "DISK_FULL" and "batch" in fault["jobs"]


def acked_not_stored(db: pathlib.Path, fleet: DeviceFleet) -> list[tuple[str, int]]:
    """(device, seq) acked to a device (seq <= its ack) but not in the store, read now."""
    with fleet.lock:
        acked = {d.id: d.acked for d in fleet.devices.values()}
    with Store.open(db) as store:
        stored = {(r["device"], r["seq"]) for r in store.readings(limit=10 ** 9)}
    return [(device, seq) for device, top in acked.items() for seq in range(top + 1) if (device, seq) not in stored]


def acks_received(fleet: DeviceFleet) -> int:
    """How many ack messages the devices received so far (missed ones too)."""
    with fleet.lock:
        return len(fleet.ack_times)


@dataclasses.dataclass
class DiskFullRun:
    check: Check
    first_start_s: float  # empty store: start to first ack
    detected_s: float  # filler in place -> retained stats with a refused batch (stats every 5 s)
    full_s: float  # filler in place -> filler removed
    resume_s: float  # filler removed -> first device ack
    settle_s: float  # filler removed -> every device acked (the backlog stored)
    fault: dict  # the retained stats' store_fault while full
    status: dict  # pmpgw status --json while full (its first gateway's stats, disk_free_bytes)
    status_runs: int  # runs of pmpgw status until it showed the refusal (its broker probe is short)
    acks_while_full: int  # ack messages the devices received while full, after the refusal was reported (must be 0)
    acked_unstored: list  # acked (device, seq) the store did not hold while full (must be empty)
    withheld: int  # readings the devices held un-acked when space returned
    held_messages: int  # messages the gateway held un-acked (store_fault.held_messages) while full
    refused_lines: int  # log lines starting an episode (must be 1)
    resumed_lines: int  # log lines ending one (must be 1)
    alive_while_full: bool
    exit_code: int | None
    log_excerpt: list[str]
    messages: dict


def run_disk_full(port: int, tmp: pathlib.Path, *, devices: int, run_before_s: float, full_hold_s: float,
                  seed: int = SEED, timeout_s: float = 60.0) -> DiskFullRun:
    """The whole experiment on the broker at ``port``: database on a tmpfs under ``tmp``
    (MountRefused if it cannot be mounted), log in ``tmp``. Devices generate for
    ``run_before_s``, the disk stays full ``full_hold_s`` after the gateway reported the
    refusal, then the filler goes and the devices stop once the gateway resumed; every
    wait is bounded by ``timeout_s`` (RuntimeError with the log's tail)."""
    with tmpfs(tmp / "disk") as disk:
        db, log = disk / "pmp.db", tmp / "pmpgw.log"
        names = [f"disk-{i:04d}" for i in range(devices)] + ["disk-warm"]
        register(db, names)
        fleet = DeviceFleet(port, names, seed=seed)
        watcher = StatsWatcher(port, "diskfull")
        gateway = gateway_process(port, db, log)
        try:
            return _experiment(port, db, disk, log, fleet, watcher, gateway, run_before_s, full_hold_s, timeout_s)
        finally:
            fleet.stop()
            watcher.stop()
            if gateway.alive():
                gateway.process.kill()
                gateway.process.wait()
            (disk / "filler").unlink(missing_ok=True)


def _experiment(port: int, db: pathlib.Path, disk: pathlib.Path, log: pathlib.Path, fleet: DeviceFleet,
                watcher: StatsWatcher, gateway: GatewayProcess, run_before_s: float, full_hold_s: float,
                timeout_s: float) -> DiskFullRun:
    def needed(value, what: str):
        if value is None:
            raise RuntimeError(f"{what} within {timeout_s} s:\n{gateway.tail()}")
        return value

    started = gateway.start()
    fleet.publish_one("disk-warm")
    first_start_s = needed(fleet.first_ack_after(started, timeout_s), "no first ack") - started
    fleet.start_generating()
    time.sleep(run_before_s)
    filled = time.monotonic()
    filler = fill(disk)
    detected, stats = needed(watcher.wait_for(refusing_batches, filled, timeout_s),
                             "no retained stats with a refused batch (DISK_FULL)")
    acks_before = acks_received(fleet)
    acked_unstored = acked_not_stored(db, fleet)
    status, status_runs = status_json(port, db, refusing_batches, timeout_s)
    time.sleep(full_hold_s)
    acks_while_full = acks_received(fleet) - acks_before
    alive = gateway.alive()
    withheld = fleet.not_acked()
    freed = time.monotonic()
    filler.unlink()
    resumed = needed(fleet.first_ack_after(freed, timeout_s), "no ack after the filler was removed")
    fleet.stop_generating()
    if not fleet.wait_all_acked(timeout_s):
        raise RuntimeError(f"{fleet.not_acked()} readings not acked {timeout_s} s after space returned:\n"
                           f"{gateway.tail()}")
    settled = time.monotonic()
    needed(watcher.wait_for(lambda s: s.get("store_fault") is None and not s.get("store_error"), settled, timeout_s),
           "no retained stats without a store fault")
    exit_code = gateway.stop()
    lines = log.read_text(errors="replace").splitlines()
    return DiskFullRun(
        check=check_exactly_once(db, fleet), first_start_s=first_start_s, detected_s=detected - filled,
        full_s=freed - filled, resume_s=resumed - freed, settle_s=settled - freed, fault=stats["store_fault"],
        status=status, status_runs=status_runs, acks_while_full=acks_while_full, acked_unstored=acked_unstored,
        withheld=withheld, held_messages=stats["store_fault"]["held_messages"],
        refused_lines=sum(REFUSED_LOG in line for line in lines),
        resumed_lines=sum(RESUMED_LOG in line for line in lines), alive_while_full=alive, exit_code=exit_code,
        log_excerpt=[line for line in lines if REFUSED_LOG in line or RESUMED_LOG in line], messages=dict(fleet.counts))


def summary(run: DiskFullRun) -> str:
    """One line of figures."""
    c = run.check
    return (f"faults.disk_full: lost {c.lost}, duplicated {c.duplicated}, wrong values {c.wrong_values} of "
            f"{c.generated} readings ({c.stored} stored); crisis {c.crisis_readings}: not alerted "
            f"{c.crisis_not_alerted}, alerted twice {c.crisis_alerted_twice}; refusal reported {run.detected_s:.1f} s "
            f"after the disk filled; full {run.full_s:.1f} s; acks while full {run.acks_while_full}; withheld "
            f"{run.withheld} readings ({run.held_messages} messages held by the gateway); resumed "
            f"{run.resume_s:.2f} s after space returned, every device acked after {run.settle_s:.2f} s (first start "
            f"{run.first_start_s:.2f} s); log lines: refused {run.refused_lines}, resumed {run.resumed_lines}; "
            f"fault {run.fault['reason']}: {run.fault['message']}; counters {c.counters}; messages {run.messages}")


def run(quick: bool) -> list[Result]:
    from gateway.broker import PrivateBroker

    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(dir=PROJECT_DIR, prefix=".bench-disk-full-") as tmp:
        broker = PrivateBroker.start(pathlib.Path(tmp) / "broker")
        try:
            fault = run_disk_full(broker.port, pathlib.Path(tmp), seed=SEED, **sizes)
        finally:
            broker.stop()
    print(summary(fault), file=sys.stderr)
    c = fault.check
    broken = (c.crisis_not_alerted, c.crisis_alerted_twice, c.alerted_not_crisis, c.crisis_alert_rows_extra,
              c.occurrences_mismatch, fault.acks_while_full, len(fault.acked_unstored))
    if any(broken) or c.violations or c.quarantined or not fault.alive_while_full:
        raise RuntimeError(f"bench: the full disk broke the alerts or acks: {summary(fault)}; {c.examples}; "
                           f"{c.violations[:5]}; acked, not stored: {fault.acked_unstored[:5]}")
    setting = (f"{sizes['devices']} simulated tonometers re-sending un-acked readings (bench.faults.DeviceFleet), "
               f"`pmpgw run --broker` with its database on a {TMPFS_BYTES >> 20} MiB tmpfs filled by a filler file "
               f"{sizes['run_before_s']:g} s in, the refusal reported after {fault.detected_s:.1f} s, full for "
               f"{fault.full_s:.1f} s ({fault.withheld:,} readings withheld, no ack), then the filler removed; "
               f"{c.generated:,} readings generated, {c.stored:,} stored, {c.crisis_readings} crisis readings each "
               f"alerted once")
    return [
        Result("faults.disk_full", "readings", float(c.lost + c.duplicated), "readings generated", float(c.generated),
               note=f"lost {c.lost}, duplicated {c.duplicated}, wrong values {c.wrong_values}; {setting}"),
        Result("faults.disk_full.resume", "s", fault.resume_s, "first start, empty store", fault.first_start_s,
               note=f"filler removed to the first device ack; every device acked after {fault.settle_s:.2f} s; "
                    f"{setting}"),
    ]
