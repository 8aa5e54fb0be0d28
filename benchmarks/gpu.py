"""Every architecture on one GPU at the report's full size: does the default AMP step, how fast is
each setting, how much memory, and how close the project's whole fit comes to a bare loop.

    python -m benchmarks.gpu [--models conv_vae,vade] [--budget 420] [--out benchmarks/results]
        [--e2e "bash benchmarks/gpu_e2e.sh"]
    python -m benchmarks.gpu --tiny        # 16 mel x 2 s shapes, any device: the smoke test's setting

Imports torch and the project only (no MLflow, Optuna or librosa needed), so it runs on a bare
PyTorch GPU image. Per architecture, in this order, each section stopping when --budget seconds
have passed (the JSON is rewritten after every architecture, so a cut-off run keeps what it got):
  1. steps: random normalised full-size windows at batch 32, already on the GPU; 3 warm-up and
     --steps timed steps each of fp32, the default AMP (train.amp_dtype=auto), AMP + channels_last,
     and float16 + GradScaler at the project's initial scale: samples/s, torch's peak allocated
     memory, good (not skipped, finite) steps;
  2. fit: the project's Trainer.fit with the default settings (AMP, channels_last, compile and
     data_on_device all auto; the per-epoch val NMI of eval.epoch_method) for --epochs epochs
     over a synthetic feature cache the size of the report's corpus after its split (1,008 train
     and 216 val windows of 180 songs), against a bare loop of the same steps on batches already
     on the GPU (forward, loss, backward, clip, fused Adam; nothing else). fit_over_bare = bare
     seconds / whole fit seconds; epoch_over_bare_epoch the same for an epoch after the first
     (the median), without the one-off costs (the reconstruction at initialisation, the first
     and the final checkpoint). The fit's own per-epoch parts (train/seconds/*) show where the
     rest goes;
then, if --e2e is given, that command (benchmarks/gpu_e2e.sh: a training run of conv_vae on the
recorded music corpus, logged to MLflow, which writes the run's metrics to the JSON path it is
given) and those metrics; then
  3. compile: AMP + channels_last + torch.compile (mode default): compile seconds and samples/s.
Writes <out>/gpu_<device>.json.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path
from typing import Any

for _module in ("librosa", "soundfile"):  # imported by the data modules, unused here
    try:
        importlib.import_module(_module)
    except ImportError:
        sys.modules[_module] = types.ModuleType(_module)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from components.config import PROJECT_ROOT, load_config  # noqa: E402
from components.data.dataset import TASKS, WindowDataset, loader_for  # noqa: E402
from components.data.feature_cache import FeatureCache  # noqa: E402
from components.evaluation.scoring import epoch_scorer  # noqa: E402
from components.models import MODELS, adapt_to_data, build_model, count_parameters  # noqa: E402
from components.settings import Experiment  # noqa: E402
from components.training.precision import FP32, Precision, autocast, choose_precision, make_scaler  # noqa: E402
from components.training.trainer import (  # noqa: E402
    Trainer,
    make_optimizer,
    optimizer_step,
    prepare_model,
)

VOCAB = {"genre": ["g0", "g1", "g2"], "language": ["l0", "l1", "l2", "l3"]}
LYRICS_DIM = 64
TINY = ["features.n_mels=16", "features.window_seconds=2.0", "features.hop_seconds=1.0",
        "features.n_fft=512", "features.hop_length=256", "model.latent_dim=8", "model.hidden_dims=[8,16]"]
# The report's corpus: 180 songs x 8 windows, split 70/15/15 by song.
TRAIN_WINDOWS, VAL_WINDOWS = 1_008, 216


class Clock:
    def __init__(self, budget: float) -> None:
        self.started = time.perf_counter()
        self.budget = budget

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.started)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def config_for(name: str, batch: int, tiny: bool, extra: list[str] = ()) -> Experiment:
    overrides = [f"train.batch_size={batch}", *(TINY if tiny else []), *extra]
    if tiny and name == "basic_vae":
        overrides.append("model.hidden_dims=[16,8]")
    if name == "multimodal":
        overrides += ["model.lyrics_dim=16", "model.attention_heads=2"] if tiny else []
    config = load_config(name, overrides)
    return adapt_to_data(config, VOCAB, getattr(config.model, "lyrics_dim", None) or LYRICS_DIM)


def random_batch(config: Experiment, size: int, device: torch.device,
                 seed: int = 0) -> dict[str, torch.Tensor]:
    n_mels, frames = config.features.shape
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(size) % len(VOCAB["genre"])
    lyrics_dim = getattr(config.model, "lyrics_dim", None) or LYRICS_DIM
    batch = {"mel": torch.randn(size, 1, n_mels, frames, generator=generator), "genre": labels,
             "language": labels % len(VOCAB["language"]),
             "lyrics": torch.randn(size, lyrics_dim, generator=generator),
             "has_lyrics": torch.arange(size) % 4 != 0}
    return {k: v.to(device) for k, v in batch.items()}


def peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def timed_steps(model: torch.nn.Module, config: Experiment, precision: Precision, batch: dict,
                steps: int, device: torch.device) -> dict[str, Any]:
    """3 warm-up then `steps` timed optimizer steps on one batch; good = stepped and finite."""
    optimizer = make_optimizer(model.parameters(), config.train, device)
    scaler = make_scaler(device, precision, model.reconstructed_features)
    model.train()

    def step() -> bool:
        with autocast(device, precision):
            out = model(batch)
        loss = model.loss(batch, out, 20)["total"]
        stepped = optimizer_step(loss, optimizer, scaler, model.parameters(), config.train.grad_clip)
        return stepped and bool(torch.isfinite(loss))

    good = [step() for _ in range(3)]
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    if scaler is None:  # the timed steps wait for nothing: good-step checks after the clock
        for _ in range(steps):
            step()
        sync(device)
        seconds = time.perf_counter() - started
        good += [step() for _ in range(2)]
    else:
        good += [step() for _ in range(steps)]
        sync(device)
        seconds = time.perf_counter() - started
    size = batch["mel"].shape[0]
    return {"samples_per_s": round(steps * size / seconds, 1),
            "ms_per_step": round(1000 * seconds / steps, 2),
            "peak_gb": peak_gb(device), "good_steps": f"{sum(good)}/{len(good)}",
            "final_scale": scaler.get_scale() if scaler is not None else None}


def step_section(name: str, base: torch.nn.Module, config: Experiment, args, device: torch.device) -> dict:
    batch = random_batch(config, args.batch, device)
    chosen = choose_precision(device, True, "auto")
    variants = {"fp32": (FP32, False), "amp": (chosen, False), "amp_channels_last": (chosen, True),
                "fp16_scaler": (choose_precision(device, True, "float16"), False)}
    result: dict[str, Any] = {"amp": chosen.label, "amp_reason": chosen.reason}
    for label, (precision, channels_last) in variants.items():
        settings = copy.deepcopy(config.train)
        settings.channels_last, settings.compile = channels_last, None
        model = prepare_model(copy.deepcopy(base), device, settings)
        result[label] = timed_steps(model, config, precision, batch, args.steps, device)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


def synthetic_cache(folder: Path, config: Experiment, train: int, val: int) -> FeatureCache:
    """A feature cache of random windows (standard normal dB, mean 0 / std 1 statistics) with
    train and val rows, 8 windows a song: the report's corpus's shape, without its audio."""
    n_mels, frames = config.features.shape
    total = train + val
    # A raw file, as FeatureCache.read expects: rows from offset 0, no header.
    windows = np.memmap(folder / "windows.f16", mode="w+", dtype=np.float16, shape=(total, n_mels, frames))
    generator = np.random.default_rng(0)
    for start in range(0, total, 64):
        stop = min(start + 64, total)
        windows[start:stop] = generator.standard_normal((stop - start, n_mels, frames), np.float32)
    windows.flush()
    song = np.arange(total) // 8
    rows = pd.DataFrame({"row": np.arange(total), "song_id": [f"s{i}" for i in song],
                         "window": np.arange(total) % 8, "start_seconds": 0.0,
                         "language": [VOCAB["language"][i % 4] for i in song],
                         "genre": [VOCAB["genre"][i % 3] for i in song],
                         "split": ["train"] * train + ["val"] * val})
    return FeatureCache(folder, {"digest": "synthetic", "vocab": VOCAB}, rows, windows,
                        np.zeros(n_mels, np.float32), np.ones(n_mels, np.float32), "synthetic")


def synthetic_lyrics(cache: FeatureCache, config: Experiment) -> tuple[dict[str, np.ndarray], int]:
    """A random lyrics embedding per song (what data.lyrics.embed_lyrics returns)."""
    dim = config.model.lyrics_dim
    generator = np.random.default_rng(1)
    return {song: generator.standard_normal(dim).astype(np.float32)
            for song in cache.rows.song_id.unique()}, dim


def bare_loop(model: torch.nn.Module, batches: list[dict], config: Experiment, precision: Precision,
              epochs: int, device: torch.device) -> float:
    optimizer = make_optimizer(model.parameters(), config.train, device)
    scaler = make_scaler(device, precision, model.reconstructed_features)
    model.train()
    sync(device)
    started = time.perf_counter()
    for epoch in range(epochs):
        for batch in batches:
            with autocast(device, precision):
                out = model(batch)
            optimizer_step(model.loss(batch, out, epoch)["total"], optimizer, scaler, model.parameters(),
                           config.train.grad_clip)
    sync(device)
    return time.perf_counter() - started


def channels_last(model: torch.nn.Module) -> bool:
    """Whether the conv weights are in NHWC layout (False for models without convolutions)."""
    return any(p.dim() == 4 and p.shape[1] > 1 and p.is_contiguous(memory_format=torch.channels_last)
               and not p.is_contiguous() for p in model.parameters())


def fit_section(name: str, base: torch.nn.Module, config: Experiment, cache: FeatureCache, args,
                device: torch.device, folder: Path) -> dict:
    config = copy.deepcopy(config)
    config.train.epochs = args.epochs
    config.train.early_stopping_patience = args.epochs + 1
    trainer = Trainer(copy.deepcopy(base), config, folder / f"checkpoints-{name}",
                      epoch_scorer=epoch_scorer(cache, config), tasks=(*TASKS, "row"))
    lyrics = synthetic_lyrics(cache, config) if MODELS[name].uses_lyrics else None
    train = loader_for(WindowDataset(cache, "train", lyrics), config, True, trainer.device)
    val = loader_for(WindowDataset(cache, "val", lyrics), config, False, trainer.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    started = time.perf_counter()
    state = trainer.fit(train, val)
    sync(device)
    fit_seconds = time.perf_counter() - started
    history = state.history
    parts = sorted({k for h in history for k in h if k.startswith("train/seconds/")})
    result = {"precision": trainer.precision.label, "loader": type(train).__name__,
              "channels_last": channels_last(trainer.model),
              "compiled": trainer.compiled, "fit_s": round(fit_seconds, 2), "peak_gb": peak_gb(device),
              "steps_per_epoch": len(train),
              "epoch_s": [round(h["train/epoch_seconds"], 3) for h in history],
              "parts_s": {p.removeprefix("train/seconds/"): [round(h.get(p, 0.0), 3) for h in history]
                          for p in parts},
              "skipped_steps": [h.get("train/skipped_steps") for h in history],
              "initial_s": round(history[0].get("train/seconds/initial", 0.0), 3),
              "final_write_s": round(trainer.final_write_seconds, 3),
              "val_loss": [round(h["val/loss"], 1) for h in history]}
    batches = list(train)  # on the device already when data_on_device holds them there
    batches = [{k: v.to(device) for k, v in b.items()} for b in batches]
    model = prepare_model(copy.deepcopy(base), device, config.train)
    bare_seconds = bare_loop(model, batches, config, trainer.precision, args.epochs, device)
    # After the first epoch (one-off costs: the baseline pass, the first checkpoint), per epoch.
    steady = float(np.median([h["train/epoch_seconds"] for h in history[1:]])) if len(history) > 1 else None
    result |= {"bare_s": round(bare_seconds, 2), "fit_over_bare": round(bare_seconds / fit_seconds, 3),
               "epoch_over_bare_epoch": round(bare_seconds / args.epochs / steady, 3) if steady else None}
    del trainer, model, batches
    return result


def compile_section(base: torch.nn.Module, config: Experiment, args, device: torch.device) -> dict:
    settings = copy.deepcopy(config.train)
    settings.channels_last, settings.compile = True, "default"
    started = time.perf_counter()
    model = prepare_model(copy.deepcopy(base), device, settings)
    batch = random_batch(config, args.batch, device)
    result = timed_steps(model, config, choose_precision(device, True, "auto"), batch, args.steps, device)
    result["setup_and_warm_up_s"] = round(time.perf_counter() - started, 1)
    return result


def run_e2e(command: str, folder: Path) -> dict:
    metrics_file = folder / "e2e_metrics.json"
    started = time.perf_counter()
    done = subprocess.run([*shlex.split(command), str(metrics_file)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True)
    result: dict[str, Any] = {"command": command, "returncode": done.returncode,
                              "wall_s": round(time.perf_counter() - started, 1),
                              "output_tail": (done.stdout + done.stderr)[-3000:]}
    if metrics_file.exists():
        result["run"] = json.loads(metrics_file.read_text())
    return result


def device_slug(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=6, help="of the fit section")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds after which no architecture starts a section (e2e always runs)")
    parser.add_argument("--sections", default="steps,fit,e2e,compile")
    parser.add_argument("--e2e", default=None, help="command run last; the JSON path is appended")
    parser.add_argument("--overrides", nargs="*", default=[], help="config overrides, key=value")
    parser.add_argument("--tiny", action="store_true", help="16 x 87 windows, few windows: a smoke test")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    models = [m for m in args.models.split(",") if m]
    sections = set(args.sections.split(","))
    clock = Clock(args.budget)
    out = args.out / f"gpu_{device_slug(device)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result: dict[str, Any] = {"device": name,
                              "torch": torch.__version__, "batch": args.batch, "steps": args.steps,
                              "epochs": args.epochs, "tiny": args.tiny, "overrides": args.overrides,
                              "models": {},
                              "date": time.strftime("%Y-%m-%d")}
    train_windows, val_windows = (24, 8) if args.tiny else (TRAIN_WINDOWS, VAL_WINDOWS)

    def save() -> None:
        result["total_s"] = round(time.perf_counter() - clock.started, 1)
        out.write_text(json.dumps(result, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cache = None
        bases: dict[str, torch.nn.Module] = {}
        plan = [s for s in ("steps", "fit", "e2e", "compile") if s in sections]
        for section in plan:
            if section == "e2e":
                if args.e2e:
                    result["e2e"] = run_e2e(args.e2e, folder)
                    shown = {k: v for k, v in result["e2e"].items() if k != "run"}
                    print("e2e", json.dumps(shown), flush=True)
                    save()
                continue
            # compile is the slowest and last: conv_vae's figure first, the one the README quotes
            for name in sorted(models, key=lambda m: section == "compile" and m != "conv_vae"):
                if clock.left() <= 0:
                    result.setdefault("cut_off", []).append(f"{section}/{name}")
                    continue
                row = result["models"].setdefault(name, {})
                try:
                    config = config_for(name, args.batch, args.tiny, args.overrides)
                    if name not in bases:  # one initialisation per architecture, copied per variant
                        torch.manual_seed(0)
                        bases[name] = build_model(name, config)
                    base = bases[name]
                    row["parameters"] = count_parameters(base)
                    if section == "steps":
                        row["steps"] = step_section(name, base, config, args, device)
                    elif section == "fit":
                        if cache is None:
                            cache = synthetic_cache(folder, config, train_windows, val_windows)
                        row["fit"] = fit_section(name, base, config, cache, args, device, folder)
                    else:
                        row["compile"] = compile_section(base, config, args, device)
                except Exception as error:  # one architecture's failure is itself a result
                    row[f"{section}_error"] = f"{type(error).__name__}: {error}"[:800]
                    row[f"{section}_trace"] = traceback.format_exc()[-2000:]
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                print(section, name, json.dumps(row.get(section, row.get(f"{section}_error"))), flush=True)
                save()
        save()
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
