"""The default recipe's parts that make the models learn: per-weight learning rates by fan-in (a
wide layer's output moves as far per Adam step as a narrow one's, not fan-in times further), and
BatchNorm statistics recomputed with each epoch's final weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from components.config import load_config
from components.models import build_model
from components.training.trainer import Trainer, fan_in, lr_groups, make_optimizer

TRAIN = load_config("basic_vae").train


def _output_step(layer: nn.Linear, reference: int | None) -> float:
    """How far the layer's output moves in one Adam step that pushes it up (every input 1)."""
    train = dataclasses.replace(TRAIN, lr=1e-3, weight_decay=0.0, lr_fan_in_reference=reference)
    optimizer = make_optimizer(layer.parameters(), train, torch.device("cpu"))
    x = torch.ones(1, layer.in_features)
    before = layer(x).item()
    (-layer(x)).sum().backward()
    optimizer.step()
    return layer(x).item() - before


def test_one_lr_moves_a_wide_layer_fan_in_times_further_and_scaling_evens_it() -> None:
    torch.manual_seed(0)
    wide, narrow = nn.Linear(4096, 1), nn.Linear(16, 1)
    # Adam's first step is lr per weight whatever the gradient's size: fan-in x lr at the output.
    assert _output_step(nn.Linear(4096, 1), None) == pytest.approx(4097 * 1e-3, rel=1e-3)
    scaled_wide, scaled_narrow = _output_step(wide, 64), _output_step(narrow, 64)
    assert scaled_wide == pytest.approx(64 * 1e-3 + 1e-3, rel=1e-2)  # weights at lr x 64 / 4096, bias at lr
    assert scaled_narrow == pytest.approx(17 * 1e-3, rel=1e-2)  # fan-in 16 < 64: lr unchanged


def test_groups_follow_torch_fan_in_convention_and_keep_every_parameter() -> None:
    model = nn.Sequential(nn.Conv2d(8, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(2048, 3))
    assert [fan_in(p) for p in model.parameters()] == [72, 1, 1, 1, 2048, 1]
    groups = lr_groups(model.parameters(), dataclasses.replace(TRAIN, lr=1e-3, lr_fan_in_reference=1024))
    assert sorted(g["lr"] for g in groups) == pytest.approx([5e-4, 1e-3])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    off = lr_groups(model.parameters(), dataclasses.replace(TRAIN, lr=1e-3, lr_fan_in_reference=None))
    assert [g["lr"] for g in off] == [1e-3]


@pytest.mark.parametrize("batches, recomputed_over", [(64, 3), (1, 1), (0, 0)])
def test_batchnorm_statistics_are_those_of_the_final_weights(tiny_config, tmp_path, batches,
                                                             recomputed_over) -> None:
    config = tiny_config("conv_vae", f"train.precise_bn_batches={batches}", "train.epochs=1", "train.lr=1e-2")
    torch.manual_seed(0)
    model = build_model("conv_vae", config)
    n_mels, frames = model.input_shape
    data = [{"mel": torch.randn(4, 1, n_mels, frames) + i, "genre": torch.zeros(4, dtype=torch.long),
             "language": torch.zeros(4, dtype=torch.long)} for i in range(3)]
    Trainer(model, config, tmp_path).fit(data, data[:1])
    conv, norm = model.encoder[0][0], model.encoder[0][1]  # the first BatchNorm reads the first conv
    with torch.no_grad():
        means = [conv(torch.cat([b["mel"] for b in data[:n]])).mean(dim=(0, 2, 3)) for n in (1, 3)]
    matches = [torch.allclose(norm.running_mean, mean, atol=1e-4) for mean in means]
    # recomputed over the first `batches` batches with the final weights; 0: the momentum average
    # over weights that kept moving, which matches neither
    assert matches == [recomputed_over == 1, recomputed_over == 3]
