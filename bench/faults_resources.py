"""What a running gateway process holds, read from /proc: resident memory, file descriptors,
threads; shared by ``tests/faults/test_resources.py`` and ``bench/soak.py``.

    gateway = GatewayProcess(port, db, log, run_args=("--dedup-slots", "16384"))
    gateway.start()
    before = steady_sample(gateway.process.pid)  # VmRSS, VmHWM, fds and threads by kind
    ...
    after = steady_sample(gateway.process.pid)

The machinery of devices, gateway processes and the exactly-once check is ``bench.faults``;
broker restarts are ``bench.faults_broker``'s.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import time

import msgpack
import paho.mqtt.client as paho

from bench.faults import HOST, DeviceFleet
from gateway.store import Store


@dataclasses.dataclass(frozen=True)
class ProcessSample:
    """One look at /proc/PID: memory in MiB (VmRSS now, VmHWM the peak so far), open file
    descriptors by kind (``socket``, ``file``, ``pipe``, ``anon``: eventfd, epoll ...), and
    threads by name (``comm``)."""

    rss_mib: float
    hwm_mib: float
    fds: dict[str, int]
    threads: dict[str, int]

    @property
    def n_fds(self) -> int:
        return sum(self.fds.values())

    @property
    def n_threads(self) -> int:
        return sum(self.threads.values())

    def line(self) -> str:
        return (f"RSS {self.rss_mib:.0f} MiB (peak {self.hwm_mib:.0f}), {self.n_fds} fds {dict(self.fds)}, "
                f"{self.n_threads} threads {dict(self.threads)}")


def _fd_kind(target: str) -> str:
    if target.startswith(("socket:", "pipe:")):
        return target.split(":")[0]
    if target.startswith("anon_inode:"):
        return "anon"
    return "file"


def sample(pid: int) -> ProcessSample:
    """/proc/PID/status (VmRSS, VmHWM), /proc/PID/fd and /proc/PID/task/*/comm, now.
    OSError if the process is gone."""
    proc = pathlib.Path(f"/proc/{pid}")
    status = dict(line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line)
    kib = {key: int(status[key].split()[0]) for key in ("VmRSS", "VmHWM")}
    fds = collections.Counter()
    for fd in os.listdir(proc / "fd"):
        try:
            fds[_fd_kind(os.readlink(proc / "fd" / fd))] += 1
        except FileNotFoundError:  # closed between the listing and the look
            continue
    threads = collections.Counter()
    for task in os.listdir(proc / "task"):
        try:
            threads[(proc / "task" / task / "comm").read_text().strip()] += 1
        except FileNotFoundError:
            continue
    return ProcessSample(rss_mib=kib["VmRSS"] / 1024, hwm_mib=kib["VmHWM"] / 1024, fds=dict(sorted(fds.items())),
                         threads=dict(sorted(threads.items())))


def steady_sample(pid: int, looks: int = 5, gap_s: float = 0.2) -> ProcessSample:
    """The most frequent (fds, threads) of ``looks`` samples ``gap_s`` apart (the latest of
    them): a descriptor or thread that lives for one look (a reconnect, a stats write) is
    not what the process holds."""
    samples = []
    for i in range(looks):
        samples.append(sample(pid))
        if i < looks - 1:
            time.sleep(gap_s)
    counts = collections.Counter((s.n_fds, s.n_threads) for s in samples)
    common = counts.most_common(1)[0][0]
    return next(s for s in reversed(samples) if (s.n_fds, s.n_threads) == common)


def resend_old(port: int, fleet: DeviceFleet, device: str, seqs: range) -> None:
    """Publish ``fleet``'s readings ``seqs`` of ``device`` again (a device re-sending its
    memory) from a client of its own, at QoS 1; return once the broker has them."""
    d = fleet.devices[device]
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"resend-{os.getpid()}-{time.time_ns()}")
    client.connect(HOST, port)
    client.loop_start()
    try:
        client.publish(f"pmp/v1/dev/{device}/m", msgpack.packb([fleet.reading(d, s) for s in seqs]),
                       qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def saved_stats(db: pathlib.Path, gw_id: str) -> dict:
    """The last stats JSON gateway ``gw_id`` saved in the store (``pmpgw status``'s source)."""
    with Store.open(db) as store:
        return next(s for s in store.gateway_stats() if s["gw"] == gw_id)
