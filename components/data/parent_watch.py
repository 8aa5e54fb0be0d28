"""Worker processes that end when the process that started them is gone, however it ended.

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
