"""Reading CPU time and memory from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from smppbridge.bench.procstat import (
    children,
    parse_stat,
    parse_status,
    read_cpu_seconds,
    sample,
    thread_cpu_seconds,
)

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


def test_thread_cpu_seconds_lists_every_thread_of_the_process():
    """Per-thread CPU of this process: the main thread under the process id, a thread
    that burnt CPU under its own id with at least what it measured itself."""
    spent: list[float] = []
    ident: list[int] = []

    def burn() -> None:
        ident.append(threading.get_native_id())
        t0 = time.thread_time()
        while time.thread_time() - t0 < 0.05:
            pass
        spent.append(time.thread_time() - t0)
        burnt.set()
        done.wait()

    burnt, done = threading.Event(), threading.Event()
    worker = threading.Thread(target=burn)
    worker.start()
    try:
        assert burnt.wait(10)
        threads = thread_cpu_seconds(os.getpid())
    finally:
        done.set()
        worker.join()
    assert os.getpid() in threads
    # /proc counts whole clock ticks (1/SC_CLK_TCK s): allow two
    assert threads[ident[0]] >= spent[0] - 2 / _TICKS
