"""Whether a process still exists, and what follows when it does not: workers that end with their
parent, and leftovers (half-written files, build folders) named after a killed process's pid.

A pool's workers outlive a parent killed with SIGKILL (nothing runs in the parent to stop them):
decode workers then sat blocked on their result pipe, about 560 MB each, after the rerun that
replaced them had finished. Each worker watches its parent's pid and start time instead.
"""

from __future__ import annotations

import os
import threading
import time

import psutil

POLL_SECONDS = 0.5


def identity(pid: int) -> tuple[int, float]:
    """(pid, start time): a pid that the system reuses for another process does not match."""
    return pid, psutil.Process(pid).create_time()


def gone(pid: str) -> bool:
    """True when pid (as written in a file name or tag) is a number no process on this host has:
    what a process killed mid-work left behind under that number is safe to remove or fail."""
    return pid.isdigit() and not psutil.pid_exists(int(pid))


def alive(process: tuple[int, float]) -> bool:
    pid, started = process
    try:
        return psutil.Process(pid).create_time() == started
    except psutil.NoSuchProcess:
        return False


def exit_with(parent: tuple[int, float]) -> None:
    """Pool initializer (initargs=(identity(os.getpid()),)): a daemon thread ends this worker
    within POLL_SECONDS once the parent is gone."""
    def watch() -> None:
        while alive(parent):
            time.sleep(POLL_SECONDS)
        os._exit(1)
    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()
