"""Torch view of a feature cache: normalised windows of one split, fetched a batch at a time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from components.data.device_windows import DeviceWindows, dataset_bytes
from components.data.feature_cache import FeatureCache
from components.data.prefetch import Prefetching
from components.errors import ConfigError
from components.models.base import Batch
from components.settings import Experiment
from components.vocabulary import AUTO, TASKS  # TASKS: the labels a batch carries


class WindowDataset(Dataset):
    """Windows of one split as batch dicts: "mel" [B, 1, n_mels, T] float32 normalised with the
    train statistics, "genre"/"language" [B] int64 indices into the cache vocabulary, "row" [B];
    with lyrics embeddings also "lyrics" [B, dim] float32 and "has_lyrics" [B] bool."""

    def __init__(self, cache: FeatureCache, split: str,
                 lyrics: tuple[dict[str, np.ndarray], int] | None = None) -> None:
        self.cache = cache
        self.rows = cache.rows[cache.rows.split == split].reset_index(drop=True)
        self.row_ids = self.rows.row.to_numpy()
        self.labels = {task: self.rows[task].map({v: i for i, v in enumerate(cache.vocab[task])})
                       .to_numpy(np.int64) for task in TASKS}
        self.lyrics = None
        if lyrics is not None:  # per window: its song's embedding, zeros + has_lyrics False if none
            vectors, dim = lyrics
            songs = self.rows.song_id.to_numpy()
            self.has_lyrics = np.array([s in vectors for s in songs], dtype=bool)
            self.lyrics = np.stack([vectors.get(s, np.zeros(dim, np.float32)) for s in songs]
                                   ).astype(np.float32) if len(songs) else np.zeros((0, dim), np.float32)
        self.mean = torch.from_numpy(cache.mel_mean)[:, None]
        self.std = torch.from_numpy(cache.mel_std)[:, None]

    def __len__(self) -> int:
        return len(self.row_ids)

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        # One sorted read per batch (runs of neighbouring rows coalesced), not one per item.
        indices = np.asarray(indices)
        order = np.argsort(self.row_ids[indices], kind="stable")
        picked = indices[order]
        # In place, in torch: a third of the time of numpy's out-of-place float32 arithmetic
        # (4.3 against 39 ms for a full-size batch of 32 on 2 cores, benchmarks/io_and_allocator.py),
        # the same values.
        mel = torch.from_numpy(self.cache.read(self.row_ids[picked])).float().sub_(self.mean).div_(self.std)
        batch = {"mel": mel.unsqueeze(1),
                 "row": torch.from_numpy(self.row_ids[picked])}
        for task in TASKS:
            batch[task] = torch.from_numpy(self.labels[task][picked])
        if self.lyrics is not None:
            batch["lyrics"] = torch.from_numpy(self.lyrics[picked])
            batch["has_lyrics"] = torch.from_numpy(self.has_lyrics[picked])
        return batch

    def __getitem__(self, index: int) -> Batch:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def _identity(batch: Batch) -> Batch:
    return batch


def drops_last_batch(windows: int, batch_size: int, shuffle: bool) -> bool:
    """Training drops a last batch of one window: BatchNorm cannot normalise it."""
    return shuffle and windows % batch_size == 1


def make_loader(dataset: WindowDataset, batch_size: int, shuffle: bool, seed: int,
                num_workers: int = 0, pin_memory: bool = False,
                prefetch: int = 0) -> DataLoader | Prefetching:
    """Batches of whole dicts. Training drops a last batch of one (BatchNorm cannot use it).
    prefetch > 0 reads that many batches ahead on a thread (train.prefetch_batches); worker
    processes (num_workers > 0) already read ahead on their own."""
    generator = torch.Generator().manual_seed(seed)
    drop_last = drops_last_batch(len(dataset), batch_size, shuffle)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                        collate_fn=_identity, num_workers=num_workers, pin_memory=pin_memory,
                        drop_last=drop_last)
    return Prefetching(loader, prefetch) if prefetch > 0 and num_workers == 0 else loader


def reseed_for_epoch(loader: Any, seed: int, epoch: int) -> None:
    """Seed a shuffling loader's generator from (seed, epoch) before the epoch: each epoch's order
    is a function of the epoch alone, so a run resumed after epoch k draws epoch k+1's order, not
    epoch 0's again (a fresh generator would replay the first). Loaders without one: no-op."""
    inner = loader.loader if isinstance(loader, Prefetching) else loader
    generator = getattr(inner, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(seed * 1_000_003 + epoch)


def check_split_sizes(train_set: WindowDataset, val_set: WindowDataset, batch_size: int) -> None:
    """A training run needs a full train batch and validation windows (early stopping reads them)."""
    if batch_size > len(train_set):
        raise ConfigError(f"train.batch_size={batch_size} is larger than the {len(train_set)} "
                          f"train windows; set train.batch_size to at most {len(train_set)}")
    if len(val_set) == 0:
        raise ConfigError("the validation split is empty; set data.val_fraction > 0")


# train.data_on_device=auto: a split goes on a GPU when it takes at most this share of its memory
# (train and val together at most twice that), leaving the rest to the model and its activations.
DEVICE_DATA_SHARE = 0.2


def on_device(dataset: WindowDataset, setting: bool | str, device: torch.device) -> bool:
    """train.data_on_device for this split: auto holds it on a GPU when it fits DEVICE_DATA_SHARE."""
    if setting != AUTO:
        return bool(setting)
    if device.type != "cuda":
        return False
    return dataset_bytes(dataset) <= DEVICE_DATA_SHARE * torch.cuda.get_device_properties(device).total_memory


def loader_for(dataset: WindowDataset, config: Experiment, shuffle: bool,
               device: torch.device) -> Iterable[Batch]:
    """The batches of a split with a run's settings: held on the device (train.data_on_device), or
    make_loader with train.batch_size, num_workers and prefetch_batches, pinned memory on CUDA (so
    copies to the GPU can be non-blocking)."""
    train = config.train
    if on_device(dataset, train.data_on_device, device):
        return DeviceWindows(dataset, train.batch_size, shuffle, config.seed, device,
                             drops_last_batch(len(dataset), train.batch_size, shuffle))
    return make_loader(dataset, train.batch_size, shuffle, config.seed, train.num_workers,
                       pin_memory=device.type == "cuda", prefetch=train.prefetch_batches)
