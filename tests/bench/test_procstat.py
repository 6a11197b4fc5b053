"""Reading CPU time and memory from /proc."""

from __future__ import annotations

import os
import subprocess
import sys

from smppbridge.bench.procstat import children, parse_stat, parse_status, read_cpu_seconds, sample

_TICKS = os.sysconf("SC_CLK_TCK")


def test_sample_reads_the_current_process():
    """sample(own pid) gives positive RSS, a peak at least that, and CPU time used."""
    sum(range(200_000))  # a little CPU, so utime is surely past zero
    s = sample(os.getpid())
    assert s.rss_bytes > 1024 * 1024
    assert s.peak_rss_bytes >= s.rss_bytes
    assert s.cpu_seconds > 0


def test_parse_stat_counts_fields_after_the_last_parenthesis():
    """A comm holding spaces and ')' does not shift utime (field 14) and stime (15)."""
    rest = "S 1 2 3 4 5 6 7 8 9 10 " + f"{3 * _TICKS} {_TICKS}" + " 0 0 20 0 1 0"
    assert parse_stat(f"4242 (odd) name (x)) {rest}\n") == 4.0


def test_parse_status_reads_rss_and_high_water_mark():
    """VmRSS and VmHWM are kB in /proc/<pid>/status; both come back in bytes."""
    text = "Name:\tpython\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\nThreads:\t1\n"
    assert parse_status(text) == (1024 * 1024, 2048 * 1024)
    assert parse_status("Name:\tkthread\n") == (0, 0)


def test_sample_adds_the_live_children_of_a_process():
    """A node's provider workers are its children: sample() counts their CPU and RSS,
    children() lists them."""
    # The child spends at least 0.2 s of CPU by its own count (a fixed amount of work
    # can take less than the assertion's margin on a fast machine).
    burn = ("import sys, time\nwhile time.process_time() < 0.2:\n    sum(range(100_000))\n"
            "print('ready', flush=True)\nsys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"  # its CPU is spent
        assert child.pid in children(os.getpid())
        own = read_cpu_seconds(os.getpid())
        child_cpu = read_cpu_seconds(child.pid)
        assert child_cpu >= 0.15  # /proc counts in clock ticks (10 ms)
        whole = sample(os.getpid())
        assert whole.cpu_seconds >= own + child_cpu - 0.02
        assert whole.rss_bytes > 2 * 1024 * 1024
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
