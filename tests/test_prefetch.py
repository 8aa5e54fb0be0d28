"""Read-ahead of batches on a thread: same order, errors where they happened, no thread left behind."""

from __future__ import annotations

import itertools
import threading

import pytest
import torch

from components.data.dataset import WindowDataset, loader_for
from components.data.prefetch import Prefetching, prefetch
from components.data.preparation import prepare_features


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "prefetch" and t.is_alive()]


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_items_arrive_in_the_loaders_order(depth):
    loader = Prefetching(list(range(50)), depth)
    assert len(loader) == 50
    assert list(loader) == list(range(50)) and list(loader) == list(range(50))  # each pass anew
    assert not _prefetch_threads()


def test_an_error_while_reading_is_raised_after_the_items_before_it():
    def source():
        yield from (1, 2)
        raise OSError("windows.f16 ended early")

    received = []
    with pytest.raises(OSError, match="ended early"):
        for item in prefetch(source(), 2):
            received.append(item)
    assert received == [1, 2] and not _prefetch_threads()


def test_stopping_early_stops_reading_ahead():
    produced = itertools.count()

    def source():
        for _ in range(1000):
            yield next(produced)

    batches = prefetch(source(), 2)
    assert next(batches) == 0
    batches.close()  # what a break or an error in the training loop does
    assert not _prefetch_threads()
    assert next(produced) <= 5  # the item taken, `depth` queued, one blocked in put: not all 1000


def test_a_runs_loader_reads_ahead_and_yields_the_batches_it_would_inline(corpus, tiny_config):
    config = tiny_config("conv_vae", f"data.source={corpus}")
    dataset = WindowDataset(prepare_features(config), "train")
    ahead = loader_for(dataset, config, True, torch.device("cpu"))
    config.train.prefetch_batches = 0
    inline = loader_for(dataset, config, True, torch.device("cpu"))
    assert isinstance(ahead, Prefetching) and not isinstance(inline, Prefetching)
    assert len(ahead) == len(inline)
    for a, b in zip(ahead, inline, strict=True):  # same shuffle: the loader's own generator
        assert torch.equal(a["row"], b["row"]) and torch.equal(a["mel"], b["mel"])


def test_a_partial_pass_is_closed_in_the_loops_own_flow():
    """first_batches (BatchNorm statistics, the reconstruction at initialisation) closes the pass
    before it returns, not when the pass is finalized: an interrupt arriving while the read-ahead
    thread is joined there was printed and dropped ("Exception ignored in: <generator ...>"), and
    a cancelled Ray worker trained on."""
    from components.data.prefetch import first_batches

    assert list(first_batches(Prefetching(list(range(50)), 2), 3)) == [0, 1, 2]
    assert not _prefetch_threads()
    assert list(first_batches(list(range(5)), 8)) == list(range(5))  # fewer than asked: all

    class InterruptedWhileClosing:
        def __iter__(self):
            try:
                yield from range(10)
            finally:
                raise KeyboardInterrupt  # a Ctrl-C arriving while the pass is closed

    with pytest.raises(KeyboardInterrupt):
        list(first_batches(InterruptedWhileClosing(), 3))
