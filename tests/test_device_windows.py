"""Windows held on the device (train.data_on_device): the batches a DataLoader would give, in its
order, epoch after epoch; auto holds them only on a GPU they fit. Run here with the CPU as the
device, the same code path as on CUDA."""

from __future__ import annotations

import pytest
import torch

from components.data import dataset as dataset_module
from components.data.dataset import WindowDataset, loader_for, on_device, reseed_for_epoch
from components.data.device_windows import DeviceWindows, dataset_bytes
from components.data.preparation import prepare_features
from components.models import adapt_to_data, build_model
from components.training.trainer import Trainer

CPU = torch.device("cpu")


@pytest.fixture()
def prepared(corpus, tiny_config):
    config = tiny_config("conv_vae", f"data.source={corpus}", "train.batch_size=5",
                         "train.prefetch_batches=0")
    cache = prepare_features(config)
    return config, cache


def _epochs(loader, seed: int, epochs: int = 2) -> list[list[dict]]:
    passes = []
    for epoch in range(epochs):
        reseed_for_epoch(loader, seed, epoch)
        passes.append(list(loader))
    return passes


@pytest.mark.parametrize("shuffle", [True, False])
def test_the_batches_are_the_data_loaders_in_its_order(prepared, shuffle):
    config, cache = prepared
    dataset = WindowDataset(cache, "train")
    config.train.data_on_device = True
    held = loader_for(dataset, config, shuffle, CPU)
    config.train.data_on_device = False
    loaded = loader_for(dataset, config, shuffle, CPU)
    assert isinstance(held, DeviceWindows) and not isinstance(loaded, DeviceWindows)
    assert len(held) == len(loaded) and len(dataset) % 5 != 0  # a last, shorter batch
    for a_epoch, b_epoch in zip(_epochs(held, config.seed), _epochs(loaded, config.seed), strict=True):
        assert len(a_epoch) == len(held)
        for a, b in zip(a_epoch, b_epoch, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                assert torch.equal(a[key], b[key]), key
    if shuffle:
        first, second = _epochs(held, config.seed)
        assert not torch.equal(first[0]["row"], second[0]["row"])  # each epoch its own order


def test_a_last_batch_of_one_window_is_dropped_in_training(prepared):
    config, cache = prepared
    dataset = WindowDataset(cache, "train")
    size = len(dataset) - 1  # leaves one window over
    drop = dataset_module.drops_last_batch(len(dataset), size, True)
    held = DeviceWindows(dataset, size, True, 0, CPU, drop)
    assert len(held) == 1 and [len(b["row"]) for b in held] == [size]


def test_auto_holds_a_split_on_a_gpu_it_fits_and_never_on_the_cpu(prepared, monkeypatch):
    config, cache = prepared
    dataset = WindowDataset(cache, "train")
    assert dataset_bytes(dataset) == len(dataset) * 16 * cache.windows.shape[2] * 4
    assert not on_device(dataset, "auto", CPU) and on_device(dataset, True, CPU)

    class Props:
        total_memory = 0

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props)
    for memory, fits in ((dataset_bytes(dataset) * 5, True), (dataset_bytes(dataset) * 4, False)):
        Props.total_memory = memory
        assert on_device(dataset, "auto", torch.device("cuda")) == fits


def test_a_fit_on_held_windows_trains_as_one_on_loaded_ones(prepared, tmp_path):
    config, cache = prepared
    config = adapt_to_data(config, cache.vocab, None)
    config.train.epochs = 2
    results = []
    for held in (True, False):
        config.train.data_on_device = held
        torch.manual_seed(0)
        trainer = Trainer(build_model("conv_vae", config), config, tmp_path / f"ckpt{held}")
        train = loader_for(WindowDataset(cache, "train"), config, True, CPU)
        val = loader_for(WindowDataset(cache, "val"), config, False, CPU)
        results.append([h["val/loss"] for h in trainer.fit(train, val).history])
    assert results[0] == pytest.approx(results[1], rel=1e-5)
