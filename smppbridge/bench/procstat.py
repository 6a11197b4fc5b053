"""CPU time and memory of a process, read from Linux ``/proc`` (proc(5)).

* ``/proc/<pid>/stat`` fields 14 and 15 (utime, stime) are CPU time in clock ticks;
  the second field (comm) may itself contain spaces and parentheses, so the fields are
  counted from its *last* closing parenthesis.
* ``/proc/<pid>/status`` ``VmRSS`` is the resident set now and ``VmHWM`` its peak
  ("high water mark") since the process started, both in kB.
* ``/proc/<pid>/task/<tid>/children`` lists the live children of each thread: a
  node's provider workers (``worker = true``) are part of what the node costs, so
  :func:`sample` adds them in.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcSample", "children", "parse_stat", "parse_status", "read_cpu_seconds",
           "read_memory", "sample"]

_TICKS = os.sysconf("SC_CLK_TCK")
#: utime and stime are fields 14 and 15 of proc(5); after "pid (comm) " the state is
#: field 3, so they are items 11 and 12 of what follows the comm.
_UTIME_AFTER_COMM = 11
_STIME_AFTER_COMM = 12
_KIB = 1024


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One reading of a process; bytes and seconds."""

    at: float
    cpu_seconds: float
    rss_bytes: int
    peak_rss_bytes: int


def parse_stat(text: str) -> float:
    """User plus system CPU seconds from the text of ``/proc/<pid>/stat``."""
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[_UTIME_AFTER_COMM]) + int(fields[_STIME_AFTER_COMM])) / _TICKS


def parse_status(text: str) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes from the text of ``/proc/<pid>/status`` (0 if absent)."""
    rss = peak = 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * _KIB
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * _KIB
    return rss, peak


def read_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds ``pid`` has used (children not included)."""
    return parse_stat(Path(f"/proc/{pid}/stat").read_text())


def _tasks(pid: int) -> list[Path]:
    """/proc/<pid>/task/<tid> of each live thread (none when the process is gone)."""
    try:
        return list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User plus system CPU seconds of each live thread of ``pid``, by thread id (the
    main thread's id is ``pid``): how a node's CPU splits between the event loop and
    the store's writer thread."""
    out: dict[int, float] = {}
    for task in _tasks(pid):
        try:
            out[int(task.name)] = parse_stat((task / "stat").read_text())
        except OSError:  # the thread ended meanwhile
            continue
    return out


def read_memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes."""
    return parse_status(Path(f"/proc/{pid}/status").read_text())


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (of any of its threads)."""
    found: list[int] = []
    for task in _tasks(pid):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile, or no such file on this kernel
            continue
    return found


def sample(pid: int) -> ProcSample:
    """CPU and memory of ``pid`` and its live children (provider workers) now; raises
    OSError if ``pid`` is gone. A child's peak is added to the parent's: an upper bound
    of the peak of the whole."""
    rss, peak = read_memory(pid)
    cpu = read_cpu_seconds(pid)
    for child in children(pid):
        try:
            child_rss, child_peak = read_memory(child)
            cpu += read_cpu_seconds(child)
        except OSError:  # it ended between the listing and the read
            continue
        rss += child_rss
        peak += child_peak
    return ProcSample(at=time.monotonic(), cpu_seconds=cpu, rss_bytes=rss,
                      peak_rss_bytes=peak)
