"""Batches read ahead on a background thread, so the training step never waits on the disk.

With DataLoader(num_workers=0) every batch is read, converted, normalised and (on CUDA) pinned
in the training thread, between two steps. Here a thread does that `depth` batches ahead while
the step runs: file reads, numpy and torch release the GIL. The order of the batches is the
loader's (its sampler and generator are untouched), so results do not change.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(batches: Iterable[T], depth: int) -> Iterator[T]:
    """Yield the items of batches, produced up to `depth` ahead on a daemon thread; depth 0 yields
    them inline. An error while producing is raised here, at the item it replaced. Closing the
    generator early (a break, an error in the loop body) stops and joins the thread."""
    if depth <= 0:
        yield from batches
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in batches:
                if not put(item):
                    return
            put(_END)
        except BaseException as error:  # noqa: BLE001 - handed to the consuming thread
            put(_Failed(error))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class Prefetching:
    """A loader (anything with len and iter) whose batches each pass reads ahead by `depth`."""

    def __init__(self, loader: Iterable[T], depth: int) -> None:
        self.loader = loader
        self.depth = depth

    def __iter__(self) -> Iterator[T]:
        return prefetch(self.loader, self.depth)

    def __len__(self) -> int:
        return len(self.loader)


def first_batches(loader: Iterable[T], count: int) -> Iterator[T]:
    """The first `count` items of one pass over loader, the pass then closed in the loop's own
    flow. A pass left open (itertools.islice alone) is closed by the garbage collector, whose
    errors are printed and dropped: a Ctrl-C (or Ray's cancel) arriving while a read-ahead thread
    was joined there was lost, and the process trained on."""
    batches = iter(loader)
    try:
        yield from itertools.islice(batches, count)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
