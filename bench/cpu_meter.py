"""CPU seconds of groups of processes over a timed run, from ``/proc`` (Linux).

    meter = CpuMeter({"gateway": lambda: [pid], "postgres": postgres_pids(postmaster)})
    meter.sample()            # at the start, then every few tenths of a second, and at the end
    meter.seconds()           # {"gateway": 1.9, "postgres": 0.7, ...} CPU s (user + system)
    meter.machine_busy_s()    # CPU s the whole machine spent busy meanwhile (all processes)

A process is counted from the first sample (its CPU before that was setup, not the run),
unless it first appears later: then it was born during the run and counts from zero. A
process that exits keeps the last value sampled (sample often enough: a few tenths of a
second). Threads are included (``/proc/PID/stat`` sums them).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")  # seconds per utime/stime tick


def process_ticks(pid: int) -> int | None:
    """utime + stime of ``pid`` in clock ticks (None if it is gone)."""
    try:
        text = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    return int(fields[11]) + int(fields[12])


def children(ppid: int) -> list[int]:
    """The processes whose parent is ``ppid`` (a scan of /proc)."""
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                text = pathlib.Path(entry.path, "stat").read_text()
            except OSError:
                continue
            if int(text.rsplit(")", 1)[1].split()[1]) == ppid:
                out.append(int(entry.name))
    return out


def machine_busy_ticks() -> int:
    """Ticks every core spent neither idle nor waiting for I/O since boot (/proc/stat)."""
    fields = [int(x) for x in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal


class CpuMeter:
    """CPU ticks of each group of processes between the first and the last ``sample``;
    ``groups`` maps a name to a function returning the group's PIDs now."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.first: dict[tuple[str, int], int] = {}
        self.last: dict[tuple[str, int], int] = {}
        self.busy: list[int] = []
        self.samples = 0

    def sample(self) -> None:
        for name, pids in self.groups.items():
            for pid in pids():
                ticks = process_ticks(pid)
                if ticks is None:
                    continue
                key = (name, pid)
                if key not in self.first:
                    self.first[key] = ticks if self.samples == 0 else 0
                self.last[key] = max(ticks, self.last.get(key, 0))
        self.busy.append(machine_busy_ticks())
        self.samples += 1

    def seconds(self) -> dict[str, float]:
        """CPU seconds of each group between the first and the last sample."""
        out = {name: 0.0 for name in self.groups}
        for (name, pid), ticks in self.last.items():
            out[name] += (ticks - self.first[(name, pid)]) * TICK_S
        return out

    def per_process(self, name: str) -> list[float]:
        """CPU seconds of each process of group ``name`` (in PID order)."""
        return [(self.last[k] - self.first[k]) * TICK_S for k in sorted(self.last) if k[0] == name]

    def machine_busy_s(self) -> float:
        """CPU seconds the whole machine (every process, every core) was busy meanwhile."""
        return (self.busy[-1] - self.busy[0]) * TICK_S if len(self.busy) > 1 else 0.0
