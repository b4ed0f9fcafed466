"""Server-side measurements from /proc: CPU time and memory, summed over a server's process tree.

Why /proc and not the server's own clock: every peer (picows, python-socketio, csente with 1 or N workers) is
measured the same way, from outside, including the supervisor and every worker of a multi-process server.

* CPU: the first field of ``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds on CPU, per thread), summed over the
  threads of every process in the tree: nanosecond resolution where ``utime``+``stime`` tick at 10 ms.
  Falls back to ``/proc/<pid>/stat`` ticks where schedstat is missing.
* Memory: ``VmRSS`` (now) and ``VmHWM`` (peak) from ``/proc/<pid>/status``, summed over the tree.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it (by the parent pid in /proc/<pid>/stat)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _cpu_ns(pid: int) -> int:
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                    stat = f.read()
                fields = stat[stat.rindex(b")") + 2 :].split()
                total += (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK
            except (OSError, ValueError, IndexError):
                pass
    return total


def _status_kb(pid: int, key: bytes) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass(frozen=True)
class Sample:
    """One look at a process tree."""

    cpu_s: float
    rss_kb: int
    hwm_kb: int
    processes: int


class ProcessTree:
    """The server: its root pid; the tree is re-read on every sample (workers may be restarted)."""

    def __init__(self, root: int) -> None:
        self.root = root

    def sample(self) -> Sample:
        pids = descendants(self.root)
        return Sample(
            cpu_s=sum(_cpu_ns(p) for p in pids) / 1e9,
            rss_kb=sum(_status_kb(p, b"VmRSS:") for p in pids),
            hwm_kb=sum(_status_kb(p, b"VmHWM:") for p in pids),
            processes=len(pids),
        )


def raise_nofile() -> int:
    """Raise this process's open-file soft limit to its hard limit (children inherit it); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def parse_cpus(spec: str | None) -> set[int] | None:
    """``"0"``, ``"0,2"``, ``"1-3"`` -> a set of CPU numbers; None/empty -> None (no pinning)."""
    if not spec:
        return None
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    available = os.sched_getaffinity(0)
    missing = cpus - available
    if missing:
        raise ValueError(f"CPUs {sorted(missing)} are not available to this process (have {sorted(available)})")
    return cpus
