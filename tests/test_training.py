"""The trainer on in-memory batches: divergence handling, checkpoints, precision, validation scale."""

from __future__ import annotations

import copy
import math
import os
import subprocess

import pytest
import torch

from components.models import build_model
from components.training import checkpoint
from components.training.trainer import NonFiniteLoss, Trainer, evaluate_loss, prepare_model


def _batches(model, count: int, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    n_mels, frames = model.input_shape
    return [{"mel": torch.randn(4, 1, n_mels, frames, generator=generator),
             "genre": torch.zeros(4, dtype=torch.long), "language": torch.zeros(4, dtype=torch.long)}
            for _ in range(count)]


@pytest.mark.parametrize(("writes", "each_step"), [("inline", True), ("background", True),
                                                 ("background", False)])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path, writes, each_step):
    """each_step False: the check a GPU makes, once at the epoch's end, still names the batch."""
    config = tiny_config("basic_vae", "train.epochs=3", f"train.async_checkpoint={writes}")
    model = build_model("basic_vae", config)
    trainer = Trainer(model, config, tmp_path / "ckpt")
    trainer.check_each_step = each_step
    good = _batches(model, 2)
    trainer.fit(good, good[:1])
    assert trainer.state.epoch == 2
    before = (tmp_path / "ckpt" / checkpoint.LAST).read_bytes()

    config.train.epochs = 5
    poisoned = _batches(model, 2, seed=1)
    poisoned[1]["mel"][0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLoss, match=r"epoch 3, batch 1.*last.pt.*train.lr"):
        trainer.fit(poisoned, good[:1])
    assert (tmp_path / "ckpt" / checkpoint.LAST).read_bytes() == before


@pytest.mark.parametrize("writes", ["inline", "background"])
def test_resume_restores_model_optimizer_and_loop_state(tiny_config, tmp_path, writes):
    # Every epoch written by the cadence, so last.pt keeps the Adam state a finished fit drops.
    config = tiny_config("basic_vae", "train.epochs=2", f"train.async_checkpoint={writes}",
                         "train.checkpoint_every=1")
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


def _checkpoint_tensors(path):
    saved = checkpoint.load(path)  # best.pt, and last.pt once the fit ended, hold no optimizer state
    moments = (saved.get("optimizer") or {"state": {}})["state"].values()
    return saved["state"], saved["model"], [t for state in moments for t in state.values()]


def test_background_writes_the_same_checkpoints_as_inline(tiny_config, tmp_path):
    written = {}
    for writes in ("inline", "background"):
        config = tiny_config("basic_vae", "train.epochs=3", f"train.async_checkpoint={writes}")
        torch.manual_seed(0)
        model = build_model("basic_vae", config)
        trainer = Trainer(model, config, tmp_path / writes)
        assert trainer.checkpoints.background == (writes == "background")
        trainer.fit(_batches(model, 2), _batches(model, 1, seed=3))
        written[writes] = [_checkpoint_tensors(tmp_path / writes / name)
                           for name in (checkpoint.LAST, checkpoint.BEST)]
    for inline, background in zip(written["inline"], written["background"]):
        timeless = [[{k: v for k, v in h.items() if "seconds" not in k} for h in state.history]
                    for state in (inline[0], background[0])]
        assert timeless[0] == timeless[1] and inline[0].best_epoch == background[0].best_epoch
        for a, b in zip([*inline[1].values(), *inline[2]], [*background[1].values(), *background[2]]):
            assert torch.equal(a, b)


def test_a_background_write_keeps_the_state_of_its_epoch(tiny_config, tmp_path):
    config = tiny_config("basic_vae")
    model = build_model("basic_vae", config)
    trainer = Trainer(model, config, tmp_path / "ckpt")
    writer = checkpoint.Writer(tmp_path / "ckpt", background=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    writer.save("basic_vae", config, trainer.state, model, trainer.optimizer, None, None, best=False)
    with torch.no_grad():
        for parameter in model.parameters():  # the next epoch's updates, while the write runs
            parameter.add_(1.0)
    writer.wait()
    saved = checkpoint.load(tmp_path / "ckpt" / checkpoint.LAST)["model"]
    assert all(torch.equal(saved[k], v) for k, v in before.items())


def test_files_half_written_by_killed_processes_are_removed(tmp_path):
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = tmp_path / f"last.pt.tmp{finished.pid}"
    alive = tmp_path / f"last.pt.tmp{os.getpid()}"
    for partial in (dead, alive):
        partial.write_bytes(b"half a checkpoint")
    checkpoint.Writer(tmp_path, background=False)
    assert not dead.exists() and alive.exists()


def test_a_failed_background_write_stops_training_naming_the_folder(tiny_config, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the checkpoint folder should be")
    config = tiny_config("basic_vae", "train.epochs=2", "train.async_checkpoint=background")
    model = build_model("basic_vae", config)
    with pytest.raises(OSError, match=r"writing the checkpoint in .*not-a-folder failed.*previous"):
        Trainer(model, config, blocked).fit(_batches(model, 1), _batches(model, 1))
    config.train.async_checkpoint = "sometimes"
    with pytest.raises(ValueError, match="train.async_checkpoint='sometimes'.*auto, background, inline"):
        Trainer(model, config, tmp_path)


def _trainer_beside_eager(name: str, config: dict, folder):
    """An eager model in eval mode, one batch, its latent means, and a Trainer (which prepares
    the model as the config says) on a copy of the same weights."""
    torch.manual_seed(0)
    eager = build_model(name, config).eval()
    batch = _batches(eager, 1)[0]
    return eager, batch, eager(batch).mu, Trainer(copy.deepcopy(eager), config, folder)


def test_channels_last_computes_the_same_model(tiny_config, tmp_path):
    config = tiny_config("conv_vae", "train.channels_last=true", "train.epochs=1")
    eager, batch, expected, trainer = _trainer_beside_eager("conv_vae", config, tmp_path / "ckpt")
    conv = trainer.model.encoder[1][0].weight  # 32 -> 64 channels (with one, both layouts coincide)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert torch.allclose(trainer.model.eval()(batch).mu, expected, atol=1e-5)
    trainer.fit(_batches(eager, 2), _batches(eager, 1, seed=3))
    eager.load_state_dict(checkpoint.load(tmp_path / "ckpt" / checkpoint.LAST)["model"])


@pytest.mark.parametrize("name", ["conv_vae", "basic_vae"])
def test_activation_checkpointing_gives_the_plain_models_gradients_and_statistics(tiny_config, name):
    config = tiny_config(name, "train.activation_checkpointing=true")
    torch.manual_seed(0)
    plain = build_model(name, config).train()
    checkpointed = prepare_model(copy.deepcopy(plain), torch.device("cpu"), config.train)
    assert checkpointed.encoder[0].forward.func.__name__ == "_checkpointed"
    batch = _batches(plain, 1)[0]
    for model in (plain, checkpointed):
        torch.manual_seed(1)  # the same dropout masks in both forwards
        model.loss(batch, model(batch), 5)["total"].backward()
    for (key, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), key
    for (key, a), b in zip(plain.state_dict().items(), checkpointed.state_dict().values(), strict=True):
        assert torch.equal(a, b), key  # running mean / var / count updated once, as in plain


@pytest.mark.slow
def test_compiled_model_trains_and_checkpoints_load_into_an_eager_one(tiny_config, tmp_path):
    config = tiny_config("basic_vae", "train.compile=default", "train.epochs=2")
    eager, batch, expected, trainer = _trainer_beside_eager("basic_vae", config, tmp_path / "ckpt")
    assert torch.allclose(trainer.model.eval()(batch).mu, expected, atol=1e-4)  # compiled forward
    trainer.fit(_batches(eager, 2), _batches(eager, 1, seed=3))
    assert trainer.state.epoch == 1 and all(map(math.isfinite, trainer.state.history[-1].values()))
    saved = checkpoint.load(tmp_path / "ckpt" / checkpoint.LAST)["model"]
    eager.load_state_dict(saved)  # strict: the same parameter names as the eager model
    assert torch.allclose(eager(batch).mu, trainer.model.eval()(batch).mu, atol=1e-4)
    config.train.compile = "fastest"
    with pytest.raises(ValueError, match="train.compile='fastest'.*max-autotune"):
        Trainer(eager, config, tmp_path)


def test_validation_loss_uses_the_full_kl_weight_during_warm_up(tiny_config, tmp_path):
    config = tiny_config("basic_vae", "model.beta=4.0", "train.kl_warmup_epochs=10")
    model = build_model("basic_vae", config)
    trainer = Trainer(model, config, tmp_path)
    terms = evaluate_loss(model, _batches(model, 1), trainer.device, trainer.precision).terms
    assert model.kl_weight(0) == pytest.approx(0.4)
    assert terms["total"] == pytest.approx(terms["recon"] + 4.0 * terms["kl"], rel=1e-5)


class _RecordingWindows(torch.utils.data.Dataset):
    """12 random windows that record which rows each batch asked for, in order."""

    def __init__(self, model) -> None:
        n_mels, frames = model.input_shape
        self.mel = torch.randn(12, 1, n_mels, frames, generator=torch.Generator().manual_seed(0))
        self.requested: list[list[int]] = []

    def __len__(self) -> int:
        return 12

    def __getitems__(self, indices):
        self.requested.append(list(indices))
        return {"mel": self.mel[indices], "genre": torch.zeros(len(indices), dtype=torch.long),
                "language": torch.zeros(len(indices), dtype=torch.long)}


def test_a_resumed_run_continues_the_data_order(tiny_config, tmp_path):
    """The batches of a run interrupted after epoch 0 and resumed are those of a run that was
    never interrupted, epoch for epoch (not epoch 0's order replayed by a fresh loader)."""
    from components.data.dataset import make_loader

    def run(directory, stops: list[int]) -> list[list[int]]:
        config = tiny_config("basic_vae", "train.prefetch_batches=0")
        torch.manual_seed(0)
        model = build_model("basic_vae", config)
        data = _RecordingWindows(model)
        for epochs in stops:  # each stop: a new process would build a new loader and trainer
            config.train.epochs = epochs
            trainer = Trainer(build_model("basic_vae", config), config, directory)
            trainer.resume()
            trainer.fit(make_loader(data, 4, shuffle=True, seed=0), _batches(model, 1, seed=3))
        return data.requested

    straight, interrupted = run(tmp_path / "straight", [3]), run(tmp_path / "interrupted", [1, 3])
    # 3 batches of the reconstruction at initialisation, then per epoch 3 to train and 3 for the
    # BatchNorm statistics (train.precise_bn_batches).
    assert interrupted == straight and len(straight) == 3 + 3 * 6
    assert straight[3:6] != straight[9:12]  # epochs differ in order


def _on_disk_epoch(directory) -> int | None:
    path = directory / checkpoint.LAST
    return checkpoint.load(path)["state"].epoch if path.exists() else None


class _InterruptedAt:
    """Batches that raise KeyboardInterrupt after the first optimizer step of one epoch: a Ctrl-C
    mid-epoch, when the weights are no longer those of any finished epoch."""

    def __init__(self, batches: list[dict], trainer: Trainer, epoch: int) -> None:
        self.batches, self.trainer, self.epoch = batches, trainer, epoch
        train_epoch = trainer._train_epoch

        def noting_the_epoch(loader, epoch):
            self.training = epoch
            return train_epoch(loader, epoch)
        trainer._train_epoch = noting_the_epoch
        self.training: int | None = None

    def __iter__(self):
        for step, batch in enumerate(self.batches):
            if self.training == self.epoch and step == 1:
                raise KeyboardInterrupt
            yield batch


def test_cadence_writes_every_nth_and_the_last_epoch_and_a_killed_run_resumes_the_last_written(
        tiny_config, tmp_path, capsys):
    config = tiny_config("basic_vae", "train.epochs=5", "train.checkpoint_every=2")
    torch.manual_seed(0)
    model = build_model("basic_vae", config)
    batches, val = _batches(model, 2), _batches(model, 1, seed=3)
    initial = copy.deepcopy(model.state_dict())

    straight = Trainer(model, config, tmp_path / "straight")
    on_disk = []
    straight.on_epoch = lambda metrics, epoch: on_disk.append(_on_disk_epoch(tmp_path / "straight"))
    straight.fit(batches, val)
    assert on_disk == [None, 1, 1, 3, 3] and _on_disk_epoch(tmp_path / "straight") == 4  # the last

    torch.manual_seed(0)
    interrupted = Trainer(build_model("basic_vae", config), config, tmp_path / "killed")
    interrupted.model.load_state_dict(initial)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(_InterruptedAt(batches, interrupted, epoch=3), val)
    assert interrupted.state.epoch == 2 and _on_disk_epoch(tmp_path / "killed") == 1
    assert "last.pt holds epoch 1, the last finished one was 2: a resume trains epochs 2-2 again" in (
        capsys.readouterr().err)

    resumed = Trainer(build_model("basic_vae", config), config, tmp_path / "killed")
    assert resumed.resume() and resumed.state.epoch == 1 and len(resumed.state.history) == 2
    resumed.fit(batches, val)
    for (key, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), key  # epochs 2-4 trained again from epoch 1's weights, Adam and RNG


def test_an_interruption_between_epochs_writes_the_last_finished_epoch(tiny_config, tmp_path):
    config = tiny_config("basic_vae", "train.epochs=6", "train.checkpoint_every=5")
    model = build_model("basic_vae", config)
    trainer = Trainer(model, config, tmp_path / "ckpt")

    def prune_after_epoch_2(metrics, epoch):  # as optuna.TrialPruned or a Ctrl-C while logging
        if epoch == 2:
            raise KeyboardInterrupt
    trainer.on_epoch = prune_after_epoch_2
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(_batches(model, 2), _batches(model, 1, seed=3))
    resumed = Trainer(build_model("basic_vae", config), config, tmp_path / "ckpt")
    assert resumed.resume() and resumed.state.epoch == 2
    for a, b in zip(trainer.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    moments = [(a, b) for state_a, state_b in zip(trainer.optimizer.state_dict()["state"].values(),
                                                  resumed.optimizer.state_dict()["state"].values())
               for a, b in zip(state_a.values(), state_b.values())]
    assert moments and all(torch.equal(a, b) for a, b in moments)


@pytest.mark.parametrize(("writes", "links"), [("inline", True), ("background", True), ("inline", False)])
def test_best_pt_holds_the_best_epochs_weights_written_or_not(tiny_config, tmp_path, monkeypatch,
                                                               writes, links):
    from components.training import trainer as training
    # Validation losses by epoch: the best epoch 2 falls between writes (epochs 1, 3, 5), epoch 1
    # was the best when it was written. The two calls before epoch 0 are the initial reconstruction.
    losses = iter([9.0, 9.0, 5.0, 4.0, 1.0, 3.0, 6.0, 7.0])

    def validation(*args, **kwargs):
        loss = next(losses)
        return training.Validation({"total": loss, "recon": loss, "kl": 0.0})
    monkeypatch.setattr(training, "evaluate_loss", validation)
    if not links:  # a file system without hard links: best.pt is then a weights-only second write
        monkeypatch.setattr(os, "link", lambda *args: (_ for _ in ()).throw(OSError("no links")))
    config = tiny_config("basic_vae", "train.epochs=6", "train.checkpoint_every=2",
                         f"train.async_checkpoint={writes}")
    model = build_model("basic_vae", config)
    folder = tmp_path / "ckpt"
    trainer = Trainer(model, config, folder)
    weights, linked = {}, {}

    def after_epoch(metrics, epoch):
        weights[epoch] = copy.deepcopy(model.state_dict())
        trainer.checkpoints.wait()
        if (folder / checkpoint.BEST).exists():
            linked[epoch] = os.path.samefile(folder / checkpoint.BEST, folder / checkpoint.LAST)
        if epoch == 3:  # best.pt never older than the best epoch last.pt names
            assert checkpoint.load(folder / checkpoint.LAST)["state"].best_epoch == 2
            assert all(torch.equal(weights[2][k], v)
                       for k, v in checkpoint.load(folder / checkpoint.BEST)["model"].items())
    trainer.on_epoch = after_epoch
    trainer.fit(_batches(model, 2), _batches(model, 1, seed=3))

    assert linked == {1: links, 2: links, 3: False, 4: False, 5: False}  # written at 1, 3, 5
    best = checkpoint.load(folder / checkpoint.BEST)
    assert best["state"].best_epoch == 2 and "optimizer" not in best  # the weights alone
    assert not torch.equal(weights[2]["fc_mu.weight"], weights[5]["fc_mu.weight"])
    assert all(torch.equal(weights[2][k], v) for k, v in best["model"].items())
    trainer.load_best()
    assert all(torch.equal(weights[2][k], v) for k, v in model.state_dict().items())


def test_checkpoint_every_below_one_is_refused_when_the_config_loads(tiny_config):
    from components.config import ConfigError

    with pytest.raises(ConfigError, match=r"train.checkpoint_every=0 must be in \[1, "):
        tiny_config("basic_vae", "train.checkpoint_every=0")


def test_auto_cadence_writes_the_first_epoch_then_after_twenty_times_a_writes_seconds(
        tiny_config, tmp_path, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(checkpoint.time, "perf_counter", lambda: clock[0])
    write = checkpoint._write

    def one_second_write(*args):
        write(*args)
        clock[0] += 1.0
    monkeypatch.setattr(checkpoint, "_write", one_second_write)
    config = tiny_config("basic_vae", "train.epochs=7", "train.checkpoint_every=auto")
    model = build_model("basic_vae", config)
    trainer = Trainer(model, config, tmp_path / "ckpt")
    on_disk = []

    def five_second_epochs(metrics, epoch):
        on_disk.append(_on_disk_epoch(tmp_path / "ckpt"))
        clock[0] += 5.0
    trainer.on_epoch = five_second_epochs
    trainer.fit(_batches(model, 2), _batches(model, 1, seed=3))
    # Epoch 0 is written (1 s); the next write is due once 20 s have passed: at the end of epoch 4.
    assert on_disk == [0, 0, 0, 0, 4, 4, 4]
    last = checkpoint.load(tmp_path / "ckpt" / checkpoint.LAST)
    assert last["state"].epoch == 6 and last["optimizer"] is None  # the fit ended: no Adam state
    best = checkpoint.load(tmp_path / "ckpt" / checkpoint.BEST)
    assert best["state"].best_epoch == last["state"].best_epoch

    finished = Trainer(build_model("basic_vae", config), config, tmp_path / "ckpt")
    assert finished.resume() and finished.fit(_batches(model, 2), _batches(model, 1, seed=3)).epoch == 6
    for a, b in zip(model.state_dict().values(), finished.model.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_every_takes_auto_or_a_count_and_names_both_when_wrong(tiny_config):
    from components.config import ConfigError

    assert tiny_config("basic_vae", "train.checkpoint_every=3").train.checkpoint_every == 3
    with pytest.raises(ConfigError, match=r"train.checkpoint_every='often' is not one of auto, <an integer"):
        tiny_config("basic_vae", "train.checkpoint_every=often")
    with pytest.raises(ConfigError, match=r"train.checkpoint_every=2.5 is not one of auto, <an integer"):
        tiny_config("basic_vae", "train.checkpoint_every=2.5")


def test_auto_layout_and_compile_follow_the_device_and_the_fits_length(tiny_config):
    from components.training.trainer import COMPILE_PAYS_AFTER_STEPS, compile_mode, uses_channels_last

    train = tiny_config("conv_vae").train
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert train.channels_last == "auto" and train.compile == "auto"
    assert uses_channels_last(train, cuda) and not uses_channels_last(train, cpu)
    assert compile_mode(train, cuda, COMPILE_PAYS_AFTER_STEPS) == "default"
    assert compile_mode(train, cuda, COMPILE_PAYS_AFTER_STEPS - 1) is None  # would not pay back
    assert compile_mode(train, cpu, 10**9) is None
    train.activation_checkpointing = True
    assert compile_mode(train, cuda, 10**9) is None  # the two are not supported together
    train.channels_last, train.compile = False, "max-autotune"
    assert not uses_channels_last(train, cuda) and compile_mode(train, cpu, 1) == "max-autotune"
