"""The trainer on in-memory batches: divergence handling, checkpoints, precision, validation scale."""

from __future__ import annotations

import pytest
import torch

from components import checkpoint
from components.models import build_model
from components.training import NonFiniteLoss, Trainer, choose_precision, evaluate_loss


def _batches(model, count: int, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    n_mels, frames = model.input_shape
    return [{"mel": torch.randn(4, 1, n_mels, frames, generator=generator),
             "genre": torch.zeros(4, dtype=torch.long), "language": torch.zeros(4, dtype=torch.long)}
            for _ in range(count)]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
    config = tiny_config("basic_vae", "train.epochs=3")
    model = build_model("basic_vae", config)
    trainer = Trainer(model, config, tmp_path / "ckpt")
    good = _batches(model, 2)
    trainer.fit(good, good[:1])
    assert trainer.state.epoch == 2
    before = (tmp_path / "ckpt" / checkpoint.LAST).read_bytes()

    config["train"]["epochs"] = 5
    poisoned = _batches(model, 2, seed=1)
    poisoned[1]["mel"][0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLoss, match=r"epoch 3, batch 1.*last.pt.*train.lr"):
        trainer.fit(poisoned, good[:1])
    assert (tmp_path / "ckpt" / checkpoint.LAST).read_bytes() == before


def test_resume_restores_model_optimizer_and_loop_state(tiny_config, tmp_path):
    config = tiny_config("basic_vae", "train.epochs=2")
    model = build_model("basic_vae", config)
    first = Trainer(model, config, tmp_path / "ckpt")
    first.fit(_batches(model, 2), _batches(model, 1, seed=3))
    second = Trainer(build_model("basic_vae", config), config, tmp_path / "ckpt")
    assert second.resume()
    assert second.state.epoch == 1 and len(second.state.history) == 2
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert second.optimizer.state_dict()["state"].keys() == first.optimizer.state_dict()["state"].keys()
    assert not Trainer(model, config, tmp_path / "elsewhere").resume()


def test_validation_loss_uses_the_full_kl_weight_during_warm_up(tiny_config, tmp_path):
    config = tiny_config("basic_vae", "model.beta=4.0", "train.kl_warmup_epochs=10")
    model = build_model("basic_vae", config)
    trainer = Trainer(model, config, tmp_path)
    terms = evaluate_loss(model, _batches(model, 1), trainer.device, trainer.precision).terms
    assert model.kl_weight(0) == pytest.approx(0.4)
    assert terms["total"] == pytest.approx(terms["recon"] + 4.0 * terms["kl"], rel=1e-5)


def test_precision_choice():
    assert choose_precision(torch.device("cuda"), True).dtype == torch.float16
    assert choose_precision(torch.device("cuda"), True).scaler
    assert choose_precision(torch.device("cpu"), False).dtype is None
    cpu = choose_precision(torch.device("cpu"), True)
    has_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert cpu.dtype == (torch.bfloat16 if has_bf16 else None) and not cpu.scaler
