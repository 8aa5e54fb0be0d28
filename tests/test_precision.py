"""Mixed precision: the dtype chosen per device, and float16 + GradScaler training a full-size
model whose loss is summed over 165,376 features (run here on the CPU, which has both)."""

from __future__ import annotations

import copy

import pytest
import torch

from components.errors import ConfigError
from components.models import build_model
from components.training.precision import (
    MEAN_LOSS_INIT_SCALE,
    MIN_SCALE,
    Precision,
    ScaleCalibration,
    autocast,
    choose_precision,
    initial_scale,
)
from components.training.trainer import EveryStepSkipped, Trainer, make_optimizer, optimizer_step

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
FP16 = Precision(torch.float16, True, "test")


def _batches(model, count: int, size: int = 2, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    n_mels, frames = model.input_shape
    return [{"mel": torch.randn(size, 1, n_mels, frames, generator=generator),
             "genre": torch.zeros(size, dtype=torch.long), "language": torch.zeros(size, dtype=torch.long)}
            for _ in range(count)]


@pytest.mark.parametrize("bf16", [True, False])
def test_auto_is_bfloat16_on_gpus_that_have_it_float16_with_a_scaler_on_older_ones(monkeypatch, bf16):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    chosen = choose_precision(CUDA, True)
    assert (chosen.dtype, chosen.scaler) == ((torch.bfloat16, False) if bf16 else (torch.float16, True))
    assert "bfloat16" in chosen.reason


def test_cpus_train_in_float32_unless_a_dtype_is_named(monkeypatch):
    assert choose_precision(CPU, True) == Precision(None, False, choose_precision(CPU, True).reason)
    assert choose_precision(CPU, False).dtype is None and choose_precision(CUDA, False).dtype is None
    assert choose_precision(CPU, True, "float16") == Precision(torch.float16, True, choose_precision(
        CPU, True, "float16").reason)
    assert choose_precision(CPU, True, "bfloat16").dtype == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(ConfigError, match="train.amp_dtype=bfloat16 but Tesla V100 has no bfloat16.*auto"):
        choose_precision(CUDA, True, "bfloat16")


def test_initial_scale_shrinks_with_the_number_of_summed_features():
    assert initial_scale(1) == MEAN_LOSS_INIT_SCALE
    assert initial_scale(128 * 1292) == 0.25  # a full-size window
    assert initial_scale(16 * 87) == 32.0


def test_calibration_skips_are_not_counted_and_a_scale_that_never_fits_is_hopeless():
    calibration = ScaleCalibration()
    counted = [calibration.record(stepped) for stepped in (False, False, True, False)]
    assert counted == [False, False, False, True]
    assert calibration.calibration_steps == 2 and calibration.calibrated
    fresh = ScaleCalibration()
    assert not fresh.hopeless(1.0) and fresh.hopeless(MIN_SCALE / 2)
    assert not ScaleCalibration(calibrated=True).hopeless(MIN_SCALE / 2)


@pytest.fixture()
def full_size(tiny_config):
    """basic_vae at the report's full 128 x 1292 windows (its loss sums 165,376 features per window):
    the architecture whose float16 step runs in milliseconds on a CPU."""
    config = tiny_config("basic_vae", "features.n_mels=128", "features.window_seconds=30.0",
                         "features.hop_seconds=20.0", "features.n_fft=2048", "features.hop_length=512",
                         "model.hidden_dims=[64,32]", "train.amp_dtype=float16", "train.epochs=2",
                         "train.batch_size=2")
    model = build_model("basic_vae", config)
    assert model.input_shape == (128, 1292) and model.reconstructed_features == 165_376
    return config, model


def test_float16_with_the_mean_loss_scale_skips_every_step_at_full_size(full_size):
    """Today's failure, reproduced on the CPU: GradScaler's default scale, sized for a mean loss,
    overflows float16 gradients of a loss summed over a full-size window on every step."""
    config, model = full_size
    optimizer = make_optimizer(model.parameters(), config.train, CPU)
    scaler = torch.amp.GradScaler("cpu", init_scale=MEAN_LOSS_INIT_SCALE)
    stepped = []
    for batch in _batches(model, 4):
        with autocast(CPU, FP16):
            out = model(batch)
        stepped.append(optimizer_step(model.loss(batch, out, 20)["total"], optimizer, scaler,
                                      model.parameters(), config.train.grad_clip))
    assert stepped == [False] * 4


def test_float16_trains_a_full_size_model_after_calibration(full_size, tmp_path):
    config, model = full_size
    before = copy.deepcopy(model.state_dict())
    trainer = Trainer(model, config, tmp_path / "ckpt")
    assert trainer.precision.dtype == torch.float16 and trainer.scaler.get_scale() == 0.25
    logged: dict[int, dict] = {}
    trainer.on_epoch = lambda metrics, epoch: logged.update({epoch: metrics})
    trainer.fit(_batches(model, 6), _batches(model, 1, seed=3))
    assert sorted(logged) == [0, 1]
    skipped = sum(m["train/skipped_steps"] for m in logged.values())
    assert skipped + logged[1]["train/amp_calibration_steps"] <= 6  # of 12: the default scale skipped all
    changed = [k for k, v in model.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])]
    assert len(changed) >= len(before) // 2  # the weights moved: steps were taken


def test_skips_while_the_scaler_calibrates_do_not_stop_training(tiny_config, tmp_path):
    """A scale far too large: every step of the first epoch is skipped while the scaler halves its
    way down, which is calibration, not failure; once it has stepped, an epoch of nothing but skips
    (the weights unchanged) stops training instead of passing for a trained epoch."""
    config = tiny_config("basic_vae", "train.epochs=1")  # float32 steps, a scaler put in: overflow at 2**128
    model = build_model("basic_vae", config)
    trainer = Trainer(model, config, tmp_path / "ckpt")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**126, growth_interval=10_000)
    logged = {}
    trainer.on_epoch = lambda metrics, epoch: logged.update(metrics)
    trainer.fit(_batches(model, 24, size=4), _batches(model, 1, size=4, seed=3))
    calibration, skipped = logged["train/amp_calibration_steps"], logged["train/skipped_steps"]
    assert calibration >= 1 and skipped < 24 - calibration  # halved until it fit, then stepped
    assert logged["train/amp_scale"] == 2.0 ** (126 - calibration - skipped)  # halved once per skip
    assert trainer.calibration.calibrated

    before = copy.deepcopy(model.state_dict())
    config.train.epochs = 2
    trainer.scaler.update(new_scale=2.0**127)
    with pytest.raises(EveryStepSkipped, match="every one of the 2 optimizer steps of epoch 1 was skipped"):
        trainer.fit(_batches(model, 2, size=4), _batches(model, 1, size=4, seed=3))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if "running" not in k
               and "num_batches" not in k)
