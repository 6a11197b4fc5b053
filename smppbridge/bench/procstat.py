"""CPU time and memory of a process, read from Linux ``/proc`` (proc(5)).

* ``/proc/<pid>/stat`` fields 14 and 15 (utime, stime) are CPU time in clock ticks;
  the second field (comm) may itself contain spaces and parentheses, so the fields are
  counted from its *last* closing parenthesis.
* ``/proc/<pid>/status`` ``VmRSS`` is the resident set now and ``VmHWM`` its peak
  ("high water mark") since the process started, both in kB.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ProcSample", "parse_stat", "parse_status", "read_cpu_seconds", "read_memory",
           "sample"]

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


def read_memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes."""
    return parse_status(Path(f"/proc/{pid}/status").read_text())


def sample(pid: int) -> ProcSample:
    """CPU and memory of ``pid`` now; raises OSError if it is gone."""
    rss, peak = read_memory(pid)
    return ProcSample(at=time.monotonic(), cpu_seconds=read_cpu_seconds(pid),
                      rss_bytes=rss, peak_rss_bytes=peak)
