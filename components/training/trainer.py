"""The trainer: AMP, gradient clipping, KL warm-up, early stopping and resumable checkpoints.

It knows models only through the shared interface (forward, loss, embed) and reports metrics
through a callback, so it never imports MLflow.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from components.config import ConfigError
from components.data.dataset import reseed_for_epoch
from components.data.device_windows import DeviceWindows
from components.data.prefetch import first_batches
from components.models.base import AFTER_WARMUP, VAE, Batch
from components.settings import Experiment, TrainSettings
from components.training import checkpoint
from components.training.activation_checkpointing import checkpoint_blocks
from components.training.checkpoint import TrainState
from components.training.host_memory import map_large_allocations
from components.training.precision import (
    Precision,
    ScaleCalibration,
    autocast,
    choose_precision,
    make_scaler,
)
from components.vocabulary import AUTO, CHECKPOINT_WRITES, COMPILE_MODES

MetricsCallback = Callable[[dict[str, float], int], None]
# Latent means [N, latent] of the validation windows + their labels per task -> metrics.
EpochScorer = Callable[[np.ndarray, dict[str, np.ndarray]], dict[str, float]]


_startup_measured = False  # the first optimizer step of this process has been timed


def seconds_since_process_start() -> float:
    return time.time() - psutil.Process().create_time()


class NonFiniteLoss(RuntimeError):
    """Training diverged; the last good checkpoint is kept for inspection or resume."""


class EveryStepSkipped(NonFiniteLoss):
    """Mixed precision skipped every optimizer step of an epoch: the weights did not change."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name} but CUDA is not available; use train.device=auto or cpu")
    return device


def writes_in_background(setting: str, device: torch.device) -> bool:
    """train.async_checkpoint: auto writes in the background on CUDA only. On a CPU the host copy
    would add the weights and Adam state (1 GB at full size) to a peak RSS already set by the
    training step, to save seconds of an epoch that takes minutes there."""
    if setting not in CHECKPOINT_WRITES:
        raise ConfigError(f"train.async_checkpoint={setting!r} is not one of {', '.join(CHECKPOINT_WRITES)}")
    return setting == "background" or (setting == "auto" and device.type == "cuda")


# train.compile=auto compiles on CUDA only when the fit has at least this many optimizer steps left:
# on an H200 compiling conv_vae took 20.7 s and saved 0.73 ms of a 10.4 ms bf16 channels-last step
# at batch 32, so it pays after ~28,000 steps (the report's corpus trains 3,200 in 100 epochs);
# basic_vae and the CVAEs ran slower compiled (benchmarks/results/gpu_nvidia_h200.json).
COMPILE_PAYS_AFTER_STEPS = 28_000
# Batches of each split the reconstruction at initialisation is measured on.
INITIAL_BATCHES = 8


def uses_channels_last(train: TrainSettings, device: torch.device) -> bool:
    """train.channels_last; auto: on CUDA, where bf16 convolutions ran 1.3-1.7x faster in NHWC
    (benchmarks/gpu.py); CPUs keep the layout their figures were measured with (NCHW)."""
    return device.type == "cuda" if train.channels_last == AUTO else bool(train.channels_last)


def compile_mode(train: TrainSettings, device: torch.device, steps_left: int) -> str | None:
    """The torch.compile mode for a fit with steps_left optimizer steps, or None (eager)."""
    if train.compile != AUTO:
        return train.compile
    # activation checkpointing and compile are not supported together: auto stays eager there
    pays = device.type == "cuda" and not train.activation_checkpointing
    return "default" if pays and steps_left >= COMPILE_PAYS_AFTER_STEPS else None


def prepare_model(model: VAE, device: torch.device, train: TrainSettings) -> VAE:
    """The model on its device, in channels-last layout, with checkpointed activations and
    compiled, as the config asks (train.compile=auto is decided by Trainer.fit, which knows the
    fit's length).

    Module.compile compiles forward in place: parameter names and the state dict stay those of
    the eager model, so checkpoints and the logged model load the same either way.
    """
    mode = train.compile
    if mode is not None and mode != AUTO and mode not in COMPILE_MODES:
        raise ConfigError(f"train.compile={mode!r} is not one of {AUTO}, {', '.join(COMPILE_MODES)} "
                          f"(or null: eager)")
    model = model.to(device)
    if uses_channels_last(train, device):
        model = model.to(memory_format=torch.channels_last)
    if train.activation_checkpointing:
        checkpoint_blocks(model)
    if mode is not None and mode != AUTO:
        model.compile(mode=mode)
    return model


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@dataclass
class Validation:
    """One pass over the validation loader: mean loss terms, and the latent means with their
    labels (kept only when asked for, so per-epoch clustering needs no second forward pass)."""

    terms: dict[str, float]
    means: np.ndarray | None = None
    labels: dict[str, np.ndarray] | None = None


def evaluate_loss(model: VAE, loader: DataLoader, device: torch.device, precision: Precision,
                  keep_means: bool = False, tasks: tuple[str, ...] = ()) -> Validation:
    """Mean loss terms over a loader, eval mode, no gradients, full KL weight (AFTER_WARMUP).
    Sums and means stay on the device until the pass ends: one wait for it, not one per batch."""
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    count = 0
    means: list[torch.Tensor] = []
    labels: dict[str, list[torch.Tensor]] = {task: [] for task in tasks}
    with torch.no_grad():
        for batch in loader:
            batch = to_device(batch, device)
            with autocast(device, precision):
                out = model(batch)
            terms = model.loss(batch, out, AFTER_WARMUP)
            size = batch["mel"].shape[0]
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.float() * size
            count += size
            if keep_means:  # in eval mode forward's mu is exactly model.embed(batch)
                means.append(out.mu.float())
                for task in tasks:
                    labels[task].append(batch[task])
    result = Validation({name: float(value) / count for name, value in sums.items()})
    if keep_means:
        result.means = torch.cat(means).cpu().numpy()
        result.labels = {task: torch.cat(v).cpu().numpy() for task, v in labels.items()}
    return result


def embed_loader(model: VAE, loader: DataLoader, device: torch.device,
                 precision: Precision) -> Iterator[tuple[Batch, torch.Tensor]]:
    """(cpu batch, latent means [B, latent] float32) per batch, eval mode."""
    model.eval()
    for batch in loader:
        with torch.no_grad(), autocast(device, precision):
            mu = model.embed(to_device(batch, device))
        yield batch, mu.float().cpu()


def fan_in(param: torch.Tensor) -> int:
    """Inputs per output of a weight, by torch's own init convention (dim 1 x kernel); 1 for
    biases and norm scales."""
    return param.shape[1] * math.prod(param.shape[2:]) if param.dim() > 1 else 1


def lr_groups(params: Iterable[torch.nn.Parameter], train: TrainSettings) -> list[dict[str, Any]]:
    """Parameter groups whose lr is train.lr x min(1, train.lr_fan_in_reference / fan-in).

    Adam moves every weight by about lr per step whatever its gradient's size, so a layer's
    output moves by about lr x fan-in x |input|. The conv VAEs' mu and logvar layers read
    163,840 features: at one lr for all, their outputs jumped ~0.7 per step and the training KL
    reached 1e6 within 8 steps. Scaling each weight's lr by 1/fan-in (muP's rule for Adam) keeps
    every layer's output step the same size. null: one lr for all (the report's recipe)."""
    reference = train.lr_fan_in_reference
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for param in params:
        scale = 1.0 if reference is None else min(1.0, reference / fan_in(param))
        groups.setdefault(scale, []).append(param)
    return [{"params": members, "lr": train.lr * scale} for scale, members in groups.items()]


def recompute_batchnorm(model: VAE, loader: DataLoader, device: torch.device, batches: int,
                        precision: Precision) -> None:
    """BatchNorm's running statistics recomputed over (at most `batches` batches of) the train
    windows with the epoch's final weights (torch's update_bn: reset, then a cumulative average
    over one forward pass; the cap bounds its cost on large corpora, as fvcore's PreciseBN does),
    in the precision the steps run in.

    The running averages (momentum 0.1) trail weights that move every step; eval mode reads them,
    and the conv VAEs' mu layers sum 163,840 normalised features, so a lag in them moved the
    eval-mode latent means far from the train-mode ones (val KL 1,650 against train 275 after two
    epochs at lr 1e-3). Costs a forward pass over those windows, no backward."""
    with torch.no_grad(), autocast(device, precision):
        first = first_batches(loader, batches)
        torch.optim.swa_utils.update_bn((to_device(batch, device) for batch in first), model)


def make_optimizer(params: Iterable[torch.nn.Parameter], train: TrainSettings,
                   device: torch.device) -> torch.optim.Adam:
    """Adam with the config's lr (per fan-in, lr_groups) and weight decay, fused into one kernel on
    CPU and CUDA: the default per-tensor loop took 1.5 s of a 2.6 s full-size VaDE step on a 2-core
    CPU, the fused one 0.16 s (benchmarks/trainer_overhead.py). Same update rule."""
    return torch.optim.Adam(lr_groups(params, train), lr=train.lr, weight_decay=train.weight_decay,
                            fused=device.type in ("cpu", "cuda"))


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler | None, params: Iterable[torch.Tensor],
                   clip: float) -> bool:
    """Backward, clip the global grad norm, step; through the GradScaler when one is used.
    False when the scaler skipped the step (scaled gradients overflowed: it lowers its scale)."""
    params = list(params)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scale = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(params, clip)
        scaler.step(optimizer)
        scaler.update()
        return scaler.get_scale() >= scale  # update() backs the scale off exactly when it skipped
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    optimizer.step()
    return True


class PhaseClock:
    """Seconds of each part of an epoch (train/seconds/<part>): where an epoch's time goes. On
    CUDA each lap waits for the device, so a part's queued kernels are counted in it (a handful
    of waits an epoch, none between steps)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.started = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, part: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.laps[f"train/seconds/{part}"] = now - self.last
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.started


class Trainer:
    """Fits one model; resumable from checkpoint_dir/last.pt."""

    def __init__(self, model: VAE, config: Experiment, checkpoint_dir: Path,
                 run_id: str | None = None, on_epoch: MetricsCallback | None = None,
                 epoch_scorer: EpochScorer | None = None, tasks: tuple[str, ...] = ()) -> None:
        train = config.train
        self.config = config
        self.device = resolve_device(train.device)
        self.precision = choose_precision(self.device, train.amp, train.amp_dtype)
        if train.lean_host_memory:
            map_large_allocations()
        self.model = prepare_model(model, self.device, train)
        self.optimizer = make_optimizer(model.parameters(), train, self.device)
        self.scaler = make_scaler(self.device, self.precision, model.reconstructed_features)
        self.calibration = ScaleCalibration()
        self.compiled = train.compile not in (None, AUTO)
        self.checkpoint_dir = Path(checkpoint_dir)
        self.checkpoints = checkpoint.Writer(self.checkpoint_dir,
                                             writes_in_background(train.async_checkpoint, self.device),
                                             train.checkpoint_every)
        self.run_id = run_id
        self.on_epoch = on_epoch or (lambda metrics, step: None)
        self.epoch_scorer = epoch_scorer  # e.g. validation NMI per epoch, for curves and pruning
        self.tasks = tasks
        self.state = TrainState()
        self.startup_seconds: float | None = None
        self.final_write_seconds: float | None = None  # the last.pt written when fit ended
        # Non-finite losses: checked after every step where waiting for it is free (CPU), once an
        # epoch where a wait would stall the device's queue (CUDA).
        self.check_each_step = self.device.type != "cuda"

    def resume(self) -> bool:
        """Load checkpoint_dir/last.pt when it exists; True when training continues from it, after
        its epoch (state.epoch): the last written one, which with train.checkpoint_every > 1 can
        be earlier than the last epoch the interrupted run finished."""
        path = self.checkpoint_dir / checkpoint.LAST
        if not path.exists():
            return False
        saved = checkpoint.load(path)
        self.model.load_state_dict(saved["model"])
        if saved["optimizer"] is not None:  # None: the fit had ended, no epoch is left to train
            self.optimizer.load_state_dict(saved["optimizer"])
        if self.scaler is not None and saved["scaler"] is not None:
            self.scaler.load_state_dict(saved["scaler"])
            self.calibration = ScaleCalibration(calibrated=True)
        torch.set_rng_state(saved["torch_rng"])
        self.state = saved["state"]
        self.checkpoints.written_epoch = self.state.epoch
        return True

    def _train_epoch(self, loader: DataLoader, epoch: int) -> dict[str, float]:
        """Mean loss terms of the epoch; with a GradScaler also 'amp_scale' (its scale at the
        end), 'skipped_steps' (steps it skipped for overflowed gradients once calibrated) and
        'amp_calibration_steps' (those it skipped finding its scale).

        On CUDA nothing here waits for the GPU: loss sums stay on the device and the losses are
        checked for non-finite values at the epoch's end (the first bad batch is still named),
        so the host queues the next steps while the GPU runs this one. The CPU checks each step:
        waiting costs it nothing, and a diverged step stops the epoch at once."""
        self.model.train()
        sums: dict[str, torch.Tensor] = {}
        totals: list[torch.Tensor] = []
        count = steps = skipped = 0
        clip = self.config.train.grad_clip
        check_each_step = self.check_each_step
        for step, batch in enumerate(tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False)):
            batch = to_device(batch, self.device)
            with autocast(self.device, self.precision):
                out = self.model(batch)
            terms = self.model.loss(batch, out, epoch)  # float32 outside autocast
            totals.append(terms["total"].detach())
            if check_each_step:
                self._check_finite(totals[-1:], epoch, step)
            stepped = optimizer_step(terms["total"], self.optimizer, self.scaler,
                                     self.model.parameters(), clip)
            steps += 1
            if self.scaler is not None:
                skipped += self.calibration.record(stepped)
            self.model.constrain_()
            self._measure_startup()
            size = batch["mel"].shape[0]
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.detach().float() * size
            count += size
        if totals and not check_each_step:
            self._check_finite(totals, epoch, 0)
        means = {name: float(value) / count for name, value in sums.items()}
        if self.scaler is None:
            return means
        scale = self.scaler.get_scale()
        if self.calibration.hopeless(scale) or (steps and skipped == steps):
            raise EveryStepSkipped(
                f"every one of the {steps} optimizer steps of epoch {epoch} was skipped: the float16 "
                f"gradients overflowed at every GradScaler scale down to {scale:g}, so the weights did "
                f"not change. Train in bfloat16 or float32 (train.amp_dtype=bfloat16, or train.amp=false) "
                f"or lower train.lr; the last good checkpoint is {self.checkpoint_dir / checkpoint.LAST}")
        return means | {"amp_scale": scale, "skipped_steps": float(skipped),
                        "amp_calibration_steps": float(self.calibration.calibration_steps)}

    def _check_finite(self, totals: list[torch.Tensor], epoch: int, first_step: int) -> None:
        """Raise NonFiniteLoss naming the first batch (counted from first_step) whose loss is not
        finite; one wait for the device for the whole list."""
        finite = torch.isfinite(torch.stack(totals)).cpu()
        if bool(finite.all()):
            return
        bad = int((~finite).nonzero()[0, 0])
        raise NonFiniteLoss(
            f"non-finite loss at epoch {epoch}, batch {first_step + bad} ({float(totals[bad])}); the last "
            f"good checkpoint is {self.checkpoint_dir / checkpoint.LAST}. Lower train.lr (now "
            f"{self.config.train.lr}) or train.grad_clip and resume or rerun.")

    def _measure_startup(self) -> None:
        """Seconds from this process's start to its first optimizer step done (imports, config,
        tracking, cache check, model build, first step), logged once per process as
        train/startup_seconds with the first epoch's metrics."""
        global _startup_measured
        if _startup_measured:
            return
        _startup_measured = True
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.startup_seconds = seconds_since_process_start()

    def fit(self, train_loader: DataLoader, val_loader: DataLoader) -> TrainState:
        """Train until train.epochs or early stopping; checkpoints after every
        train.checkpoint_every-th epoch, the last one, and the last finished one when interrupted
        between epochs. Returns (or raises) only once the last checkpoint is on disk."""
        try:
            self._fit(train_loader, val_loader)
        except BaseException:
            # Errors name the last good checkpoint, and a pruned or interrupted run may be
            # resumed at once: write the last finished epoch if the weights are still its, and
            # finish the write in flight, keeping the first error.
            try:
                self.checkpoints.flush()
                self.checkpoints.wait()
            except OSError as err:
                print(f"warning: {err}", file=sys.stderr)
            written = self.checkpoints.written_epoch
            if written is None and self.state.epoch >= 0:
                print(f"note: no checkpoint was written to {self.checkpoint_dir} (train.checkpoint_every="
                      f"{self.checkpoints.every}); a rerun starts from epoch 0", file=sys.stderr)
            elif written is not None and written < self.state.epoch:
                print(f"note: {self.checkpoint_dir / checkpoint.LAST} holds epoch {written}, the last "
                      f"finished one was {self.state.epoch}: a resume trains epochs {written + 1}-"
                      f"{self.state.epoch} again", file=sys.stderr)
            raise
        started = time.perf_counter()
        self.checkpoints.flush(finished=True)
        self.checkpoints.wait()
        self.final_write_seconds = time.perf_counter() - started
        return self.state

    def per_feature(self, terms: dict[str, float]) -> float:
        """Mean squared error per reconstructed mel feature of normalised log-mel: 1.0 is what
        predicting each bin's train mean scores, so below 1 the decoder learned something."""
        return terms.get("recon_audio", terms["recon"]) / self.model.reconstructed_features

    def initial_reconstruction(self, train_loader: DataLoader, val_loader: DataLoader) -> dict[str, float]:
        """Reconstruction per feature of the weights training starts from, on (at most
        INITIAL_BATCHES batches of) train and val, eval mode: the baseline every later epoch is
        read against. A sample, since a full pass cost more than the first training step (19 s of
        the demo's start-up on a CPU, benchmarks/README.md) and a baseline needs no more."""
        return {f"{split}/recon_per_feature_init": self.per_feature(evaluate_loss(
                    self.model, first_batches(loader, INITIAL_BATCHES), self.device, self.precision).terms)
                for split, loader in (("train", train_loader), ("val", val_loader))}

    def _fit(self, train_loader: DataLoader, val_loader: DataLoader) -> None:
        train = self.config.train
        patience = train.early_stopping_patience
        started = time.perf_counter()
        initial = self.initial_reconstruction(train_loader, val_loader) if self.state.epoch < 0 else {}
        if initial:
            initial["train/seconds/initial"] = time.perf_counter() - started
        self._compile_if_it_pays(train_loader)
        for epoch in range(self.state.epoch + 1, train.epochs):
            if self.state.epochs_without_improvement >= patience:
                break
            clock = PhaseClock(self.device)
            self.checkpoints.forget()  # an epoch not yet written can no longer be
            reseed_for_epoch(train_loader, self.config.seed, epoch)
            train_terms = self._train_epoch(train_loader, epoch)
            clock.lap("steps")
            if train.precise_bn_batches:
                recompute_batchnorm(self.model, train_loader, self.device, train.precise_bn_batches,
                                    self.precision)
                clock.lap("batchnorm")
            validation = evaluate_loss(self.model, val_loader, self.device, self.precision,
                                       keep_means=self.epoch_scorer is not None, tasks=self.tasks)
            clock.lap("validation")
            val_terms = validation.terms
            if not math.isfinite(val_terms["total"]):
                raise NonFiniteLoss(f"non-finite validation loss at epoch {epoch}: {val_terms}; "
                                    f"last good checkpoint {self.checkpoint_dir / checkpoint.LAST}")
            improved = val_terms["total"] < self.state.best_val
            if improved:
                self.state.best_val, self.state.best_epoch = val_terms["total"], epoch
                self.state.epochs_without_improvement = 0
            else:
                self.state.epochs_without_improvement += 1
            self.state.epoch = epoch
            metrics = {f"train/{'loss' if k == 'total' else k}": v for k, v in train_terms.items()}
            metrics |= {f"val/{'loss' if k == 'total' else k}": v for k, v in val_terms.items()}
            metrics |= {"train/recon_per_feature": self.per_feature(train_terms),
                        "val/recon_per_feature": self.per_feature(val_terms),
                        "train/kl_weight": self.model.kl_weight(epoch)}
            metrics |= initial  # with the first epoch's metrics: logged before any other
            initial = {}
            if self.epoch_scorer is not None:
                metrics |= self.epoch_scorer(validation.means, validation.labels)
                clock.lap("scoring")
            if self.startup_seconds is not None:
                metrics["train/startup_seconds"], self.startup_seconds = self.startup_seconds, None
            metrics["train/epoch_seconds"] = clock.total()
            self.state.history.append({"epoch": epoch, **metrics})
            self.checkpoints.save(self.config.model.name, self.config, self.state, self.model,
                                  self.optimizer, self.scaler, self.run_id, best=improved)
            clock.lap("checkpoint")
            metrics |= clock.laps
            self.state.history[-1] |= clock.laps
            self.on_epoch(metrics, epoch)

    def choices(self, train_loader: Iterable[Batch]) -> dict[str, str]:
        """What the auto settings resolve to for this fit (logged as the run's tags)."""
        return {"channels_last": str(uses_channels_last(self.config.train, self.device)),
                "compile": str(self._compile_mode(train_loader) or "eager"),
                "data_on_device": str(isinstance(train_loader, DeviceWindows))}

    def _compile_mode(self, train_loader: Iterable[Batch]) -> str | None:
        """compile_mode for the optimizer steps this fit has left."""
        train = self.config.train
        return compile_mode(train, self.device, (train.epochs - self.state.epoch - 1) * len(train_loader))

    def _compile_if_it_pays(self, train_loader: DataLoader) -> None:
        """train.compile=auto: compile now if this fit is long enough to pay for it (compile_mode)."""
        if self.compiled or self.config.train.compile != AUTO or self.device.type != "cuda":
            return
        mode = self._compile_mode(train_loader)
        if mode is not None:
            self.model.compile(mode=mode)
            self.compiled = True

    def load_best(self) -> None:
        """Put the best-validation weights back into the model (after fit)."""
        path = self.checkpoint_dir / checkpoint.BEST
        if path.exists():
            self.model.load_state_dict(checkpoint.load(path, mmap=True)["model"])
