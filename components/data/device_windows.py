"""A split's windows held on the training device for the whole fit, batched there.

A full-size conv_vae step takes ~10 ms on an H200 (benchmarks/gpu.py): with the windows held
there, no batch is read, normalised, pinned or copied between two steps (the fit's steps ran
within 3-5% of a bare loop's). The report's corpus (180 songs, ~1,440 windows of 128 x 1292) is
~1 GB in float32: it fits on any GPU it trains on. The batches are those of the DataLoader this
replaces, in the same order: the same sampler arithmetic (torch.randperm on the loader's
generator, which reseed_for_epoch seeds per epoch), the same last-batch rule, the same values
(float32, normalised once).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from components.models.base import Batch

if TYPE_CHECKING:  # dataset.loader_for builds these: a runtime import would be a circle
    from components.data.dataset import WindowDataset

# Windows read from the cache per copy while filling the device tensors (bounds host memory).
FILL_CHUNK = 64


def dataset_bytes(dataset: WindowDataset) -> int:
    """Bytes the split takes on the device (float32 windows; labels and lyrics are small)."""
    if len(dataset) == 0:
        return 0
    n_mels, frames = dataset.cache.windows.shape[1:]
    return len(dataset) * n_mels * frames * 4


class DeviceWindows:
    """An iterable of batch dicts over `dataset`, every tensor already on `device`."""

    def __init__(self, dataset: WindowDataset, batch_size: int, shuffle: bool, seed: int,
                 device: torch.device, drop_last: bool) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)
        self.drop_last = drop_last
        self.device = device
        self.row_ids = torch.tensor(dataset.row_ids)
        self.tensors = self._fill()

    def _fill(self) -> Batch:
        parts: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(self.dataset), FILL_CHUNK):
            rows = list(range(start, min(start + FILL_CHUNK, len(self.dataset))))
            # __getitems__ reads in row order, not the order asked: put it back in index order.
            batch = self.dataset.__getitems__(rows)
            order = torch.from_numpy(self.dataset.row_ids[rows]).argsort(stable=True).argsort(stable=True)
            for key, value in batch.items():
                parts.setdefault(key, []).append(value[order].to(self.device))
        return {key: torch.cat(values) for key, values in parts.items()}

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.dataset)
        # As a DataLoader iterator draws: its workers' base seed, then RandomSampler's randperm.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            picked = order[start:start + self.batch_size]
            picked = picked[self.row_ids[picked].argsort(stable=True)]  # as WindowDataset orders a batch
            picked = picked.to(self.device, non_blocking=True)
            yield {key: value.index_select(0, picked) for key, value in self.tensors.items()}
        if self.shuffle:  # RandomSampler's last draw, the permutation of its empty remainder
            torch.randperm(n, generator=self.generator)
