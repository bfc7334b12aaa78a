"""CPU time and resident memory of a process, from /proc (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuSample:
    """A process's user+system CPU seconds at a wall-clock instant."""

    cpu_s: float
    wall_s: float

    def percent_since(self, earlier: CpuSample) -> float:
        """CPU use between two samples, in % of one core."""
        wall_s = self.wall_s - earlier.wall_s
        return 100.0 * (self.cpu_s - earlier.cpu_s) / wall_s if wall_s > 0 else 0.0


def cpu_sample(pid: int, now_s: float) -> CpuSample:
    """CPU seconds used so far by ``pid`` (utime + stime of /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        text = stat.read()
    # the command name (field 2) may hold spaces: count fields after its closing parenthesis
    fields = text[text.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return CpuSample(cpu_s=(utime + stime) / _TICKS_PER_S, wall_s=now_s)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far."""
    return cpu_sample(pid, 0.0).cpu_s


def machine_cpu_sample(now_s: float) -> CpuSample:
    """CPU seconds used so far by every process on the machine (the busy columns of /proc/stat).

    Compared with what the benchmark's own processes used, it shows foreign load: on a shared
    machine another process on the same cores skews every figure. irq and softirq count as
    busy because tick accounting also charges them to the process that was interrupted (on
    loopback the receiver's TCP work runs in the sender's softirq); steal does not.
    """
    with open("/proc/stat", "rb") as stat:
        fields = stat.readline().split()
    user, nice, system, irq, softirq = (int(fields[i]) for i in (1, 2, 3, 6, 7))
    return CpuSample(cpu_s=(user + nice + system + irq + softirq) / _TICKS_PER_S, wall_s=now_s)


def own_cpu_sample(now_s: float) -> CpuSample:
    """CPU seconds used so far by this process (finer grained than /proc ticks)."""
    times = os.times()
    return CpuSample(cpu_s=times.user + times.system, wall_s=now_s)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """Resident set size of ``pid`` in KiB (VmRSS of /proc/<pid>/status; ``field="VmHWM"``: its
    high-water mark)."""
    prefix = field + ":"
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
        for line in status:
            if line.startswith(prefix):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")
