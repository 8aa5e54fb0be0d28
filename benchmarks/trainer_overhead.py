"""The project's trainer against a bare PyTorch loop: same full-size model, batch and precision,
data in memory, in one process; samples/s of both and their ratio.

    python -m benchmarks.trainer_overhead [--models conv_vae,vade] [--songs-per-cell 4] [--epochs 6]
        [--variants before,inline,background] [--no-default-adam] [--out results/trainer_overhead.json]

The data is the real cache of a generated corpus at the report's features (128 x 1292 float16
memory map, read through the project's loader); the bare loop gets the same normalised batches as
tensors already in memory and does the same recipe with nothing around it: forward, loss,
backward, global grad-norm clipping, the fused Adam the trainer uses, and after each epoch the
recipe's model work, BatchNorm statistics recomputed (train.precise_bn_batches) and the
validation loss that early stopping reads. fit_over_bare is the trainer's whole fit against that
loop: what the platform costs (loader, finite-loss checks, progress bar, per-epoch clustering
score, checkpoints, logging). The same loop without the after-epoch work (train_phase_over_bare)
and with torch's default Adam, as a researcher writes it first (over_bare_default_adam), is timed
once each. The trainer runs inside an MLflow run with logging on (per-epoch metrics, async, and
MLflow's system metrics), as `pipelines.train` runs it; its per-epoch seconds are split into train
phase, BatchNorm pass, validation pass, clustering score, checkpoint and logging.
The trainer runs once per variant: `before`, the checkpoints as they were written up to
train.checkpoint_every (last.pt with the Adam state after every epoch, and best.pt as a second,
weights-only write after every improving epoch); `inline` and `background`, the config's
checkpoint_every (auto by default; train.async_checkpoint inline or background; best.pt a hard
link or a host copy). `--overrides train.checkpoint_every=5` measures an every-5th cadence.
Order: the train-only bare loop, the bare loop, the trainers, the bare loop again (the machine is
noisy; both runs show), then the default-Adam loop (--no-default-adam skips it).
Writes benchmarks/results/trainer_overhead.json (or --out), keeping models not rerun.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from components.config import PROJECT_ROOT, load_config
from components.data.dataset import TASKS, WindowDataset, loader_for, make_loader
from components.data.feature_cache import FeatureCache
from components.data.preparation import prepare_features
from components.evaluation.clustering import nmi_per_task
from components.models import MODELS, adapt_to_data, build_model
from components.models.base import AFTER_WARMUP
from components.settings import Experiment
from components.tracking import mlflow_runs as tracking
from components.training import trainer as training
from components.training.precision import autocast, choose_precision, make_scaler
from components.training.trainer import (
    Trainer,
    make_optimizer,
    optimizer_step,
    resolve_device,
    to_device,
)
from corpora.demo_corpus import generate_demo_corpus

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "trainer_overhead.json"


def stand_in(folder: Path, songs_per_cell: int, seconds: float,
             extra: list[str]) -> tuple[FeatureCache, list[str]]:
    """A generated corpus prepared at the report's features (unless extra overrides change
    them); the overrides that point at it."""
    corpus = generate_demo_corpus(folder / "corpus", songs_per_cell=songs_per_cell,
                                  min_seconds=seconds, max_seconds=seconds + 5)
    overrides = [f"data.source={corpus}", f"data.cache_dir={folder / 'cache'}",
                 f"train.checkpoint_dir={folder / 'checkpoints'}", *extra]
    return prepare_features(load_config("conv_vae", overrides)), overrides


def bare_loop(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], config: Experiment,
              epochs: int, fused: bool, val_batches: list[dict[str, torch.Tensor]] | None = None) -> float:
    """Seconds for `epochs` passes of forward, loss, backward, clip, step over in-memory batches:
    the trainer's optimizer and step (make_optimizer, optimizer_step), or torch's default Adam.
    With val_batches, also the recipe's model work after each epoch, as a researcher's own loop
    with early stopping does it: BatchNorm statistics recomputed (train.precise_bn_batches) and
    the validation loss."""
    device = next(model.parameters()).device
    # The trainer's precision and GradScaler (sized for the loss's feature count), not torch's defaults.
    precision = choose_precision(device, config.train.amp, config.train.amp_dtype)
    scaler = make_scaler(device, precision, model.reconstructed_features)
    train = config.train
    optimizer = (make_optimizer(model.parameters(), train, device) if fused else
                 torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay))
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for batch in batches:
            with autocast(device, precision):
                out = model(batch)
            loss = model.loss(batch, out, epoch)["total"]
            optimizer_step(loss, optimizer, scaler, model.parameters(), train.grad_clip)
        if val_batches is not None:
            if train.precise_bn_batches:
                training.recompute_batchnorm(model, batches, device, train.precise_bn_batches, precision)
            model.eval()
            with torch.no_grad(), autocast(device, precision):
                sum(float(model.loss(b, model(b), AFTER_WARMUP)["total"]) for b in val_batches)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def trainer_fit(model: torch.nn.Module, cache: FeatureCache, config: Experiment,
                folder: Path) -> tuple[Trainer, dict[str, float]]:
    """The project's Trainer fitted inside an MLflow run, logging as pipelines.train does, and
    the seconds of its parts: train phase, validation pass, clustering score, checkpoint writes
    (what the loop waits for), metric logging, and the whole fit."""
    train_set, val_set = WindowDataset(cache, "train"), WindowDataset(cache, "val")
    seed = config.seed
    seconds = dict.fromkeys(("train_phase", "batchnorm", "validation", "scoring", "checkpoint", "logging"),
                            0.0)

    inside: set[str] = set()  # a save waits on the previous write: count that time once

    def timed(part: str, function: Callable) -> Callable:
        def run(*args, **kwargs):
            if part in inside:
                return function(*args, **kwargs)
            inside.add(part)
            started = time.perf_counter()
            try:
                result = function(*args, **kwargs)
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
            finally:
                inside.discard(part)
            seconds[part] += time.perf_counter() - started
            return result
        return run

    def scorer(means, labels):
        labels.pop("row")
        return nmi_per_task(means, labels, config.eval.epoch_method, seed)

    with tracking.run(config.tracking, run_name=f"trainer-overhead-{config.model.name}"):
        trainer = Trainer(model, config, folder / "checkpoints" / tracking.active_run_id(),
                          on_epoch=timed("logging", tracking.log_metrics),
                          epoch_scorer=timed("scoring", scorer), tasks=(*TASKS, "row"))
        trainer._train_epoch = timed("train_phase", trainer._train_epoch)
        for method in ("save", "flush", "wait"):  # flush writes the last epoch when fit ends
            setattr(trainer.checkpoints, method, timed("checkpoint", getattr(trainer.checkpoints, method)))
        validate, batchnorm = training.evaluate_loss, training.recompute_batchnorm
        training.evaluate_loss = timed("validation", validate)
        training.recompute_batchnorm = timed("batchnorm", batchnorm)
        started = time.perf_counter()
        try:
            trainer.fit(loader_for(train_set, config, True, trainer.device),
                        loader_for(val_set, config, False, trainer.device))
        finally:
            training.evaluate_loss, training.recompute_batchnorm = validate, batchnorm
        return trainer, seconds | {"fit": time.perf_counter() - started}


VARIANTS = ("before", "inline", "background")


def variant_config(config: Experiment, variant: str) -> Experiment:
    variant_config = copy.deepcopy(config)
    train = variant_config.train
    train.async_checkpoint = "inline" if variant == "before" else variant
    if variant == "before":
        train.checkpoint_every = 1
    return variant_config


def measure(name: str, cache: FeatureCache, overrides: list[str], epochs: int, folder: Path,
            variants: list[str], default_adam: bool) -> dict[str, Any]:
    no_pretraining = ["model.pretrain_epochs=0"] if hasattr(MODELS[name].Settings, "pretrain_epochs") else []
    config = adapt_to_data(load_config(name, [*overrides, f"train.epochs={epochs}",
                                              f"train.early_stopping_patience={epochs}", *no_pretraining]),
                           cache.vocab, None)
    device = resolve_device(config.train.device)
    train_set = WindowDataset(cache, "train")
    size = config.train.batch_size
    loader = make_loader(train_set, size, True, config.seed)
    batches = [to_device(b, device) for b in loader]  # the same windows, already in memory
    samples = sum(b["mel"].shape[0] for b in batches) * epochs

    def fresh_model() -> torch.nn.Module:
        torch.manual_seed(config.seed)
        return build_model(name, config).to(device)

    val_batches = [to_device(b, device) for b in make_loader(WindowDataset(cache, "val"), size, False,
                                                             config.seed)]
    bare_loop(fresh_model(), batches[:1], config, 1, fused=True)  # warm kernels and allocator, untimed
    train_only = bare_loop(fresh_model(), batches, config, epochs, fused=True)
    bare_first = bare_loop(fresh_model(), batches, config, epochs, fused=True, val_batches=val_batches)
    fits = {}
    for variant in variants:
        # Without hard links the writer falls back to best.pt as a second, weights-only write:
        # with a write after every epoch, exactly what it did before checkpoint_every.
        links = mock.patch.object(os, "link", side_effect=OSError("no links: the old second write"))
        with links if variant == "before" else contextlib.nullcontext():
            fits[variant] = trainer_fit(fresh_model(), cache, variant_config(config, variant), folder)[1]
    bare_again = bare_loop(fresh_model(), batches, config, epochs, fused=True, val_batches=val_batches)
    bare = (bare_first + bare_again) / 2  # with the recipe's model work
    plain = bare_loop(fresh_model(), batches, config, epochs, fused=False) if default_adam else None
    precision = choose_precision(device, config.train.amp, config.train.amp_dtype).label

    def trainer_result(parts: dict[str, float]) -> dict[str, Any]:
        # Without the after-epoch passes and the clustering score: against the train-only loop.
        platform = parts["fit"] - parts["validation"] - parts["scoring"] - parts["batchnorm"]
        return {
            "train_phase_samples_per_s": round(samples / parts["train_phase"], 3),
            "train_phase_over_bare": round(train_only / parts["train_phase"], 3),
            "over_bare_default_adam": round(plain / parts["train_phase"], 3) if plain else None,
            "fit_without_validation_over_train_only_bare": round(train_only / platform, 3),
            "fit_samples_per_s": round(samples / parts["fit"], 3),
            "fit_over_bare": round(bare / parts["fit"], 3),
            "per_epoch_s": {part: round(value / epochs, 2) for part, value in parts.items()},
        }

    return {
        "model": name, "device": str(device), "precision": precision,
        "batch": size, "train_windows": len(train_set), "val_windows": len(WindowDataset(cache, "val")),
        "epochs": epochs, "checkpoint_every": {v: variant_config(config, v).train.checkpoint_every
                                               for v in variants},
        "bare_train_only_s": round(train_only, 1),
        "bare_samples_per_s": round(samples / bare, 3),
        "bare_runs_s": [round(bare_first, 1), round(bare_again, 1)],
        "bare_default_adam_samples_per_s": round(samples / plain, 3) if plain else None,
        "trainer": {variant: trainer_result(parts) for variant, parts in fits.items()},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="conv_vae,vade")
    p.add_argument("--songs-per-cell", type=int, default=4)
    p.add_argument("--seconds", type=float, default=90.0, help="length of each generated song")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"trainer runs, of {', '.join(VARIANTS)}")
    p.add_argument("--no-default-adam", action="store_true", help="skip the default-Adam bare loop")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--overrides", nargs="*", default=[], help="config overrides, e.g. train.amp=false")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trainer-overhead-") as tmp:
        folder = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
        cache, overrides = stand_in(folder, args.songs_per_cell, args.seconds, args.overrides)
        variants = args.variants.split(",")
        if unknown := set(variants) - set(VARIANTS):
            p.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
        results = [measure(name, cache, overrides, args.epochs, folder, variants, not args.no_default_adam)
                   for name in args.models.split(",")]
    if args.out.exists():  # models not rerun keep their last numbers
        rerun = {r["model"] for r in results}
        results = [r for r in json.loads(args.out.read_text())["models"] if r["model"] not in rerun] + results
    result = {"threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(), "models": results}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    for r in results:  # the headline: the whole fit against the bare loop, per variant
        print(r["model"], {v: t["fit_over_bare"] for v, t in r["trainer"].items()})


if __name__ == "__main__":
    main()
