"""Training recipes on the demo corpus, trainer only (no MLflow): per-epoch reconstruction per
feature, KL and best epoch, and the first steps' latent statistics that showed why the report's
recipe does not train the conv VAEs.

    python -m benchmarks.recipe fit conv_vae TAG [key=value ...]     # e.g. train.lr=1e-3 train.batch_size=8
    python -m benchmarks.recipe steps conv_vae TAG [key=value ...]   # 8 steps: |mu|, max logvar, KL

`fit` trains with the given overrides on the demo's train songs and validates on its val songs;
`steps` takes 8 optimizer steps and prints, after each, the train-mode latent statistics and the
eval-mode reconstruction of the batch. Appends one JSON line per call to
benchmarks/results/recipe.jsonl (or to --out FILE).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from components.config import PROJECT_ROOT, load_config
from components.data.dataset import WindowDataset, loader_for
from components.data.lyrics import embed_lyrics
from components.data.preparation import prepare_features
from components.models import MODELS, adapt_to_data, build_model
from components.models.base import FitSetup
from components.training.seeding import seed_everything
from components.training.trainer import Trainer, make_optimizer

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "recipe.jsonl"


def _setup(name: str, overrides: list[str]) -> tuple[dict[str, Any], Any, Any, Any]:
    config = load_config(name, overrides)
    cache = prepare_features(config)
    lyrics = embed_lyrics(cache, config.lyrics, config.seed) if MODELS[name].uses_lyrics else None
    config = adapt_to_data(config, cache.vocab, lyrics[1] if lyrics else None)
    seed_everything(config.seed)
    return config, cache, WindowDataset(cache, "train", lyrics), WindowDataset(cache, "val", lyrics)


def fit(name: str, overrides: list[str]) -> dict[str, Any]:
    config, cache, train_set, val_set = _setup(name, overrides)
    model = build_model(name, config)
    epochs: list[dict[str, float]] = []
    keep = ("train/kl", "val/kl", "val/loss", "train/epoch_seconds")

    def on_epoch(metrics: dict[str, float], epoch: int) -> None:
        epochs.append({k: round(v, 4) for k, v in metrics.items() if "recon_per_feature" in k or k in keep})
        print(epoch, epochs[-1], flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(model, config, Path(folder), None, on_epoch=on_epoch)
        train_loader = loader_for(train_set, config, True, trainer.device)
        trainer.model.before_fit(FitSetup(train_loader, config, trainer.device, trainer.precision,
                                          Path(folder) / "pretrain", cache.dataset_digest, lambda *a: None))
        state = trainer.fit(train_loader, loader_for(val_set, config, False, trainer.device))
        shutil.rmtree(folder, ignore_errors=True)
    return {"train_windows": len(train_set), "best_epoch": state.best_epoch,
            "seconds": round(time.perf_counter() - started, 1), "epochs": epochs}


def steps(name: str, overrides: list[str], count: int = 8) -> dict[str, Any]:
    config, _, train_set, _ = _setup(name, overrides)
    model = build_model(name, config)
    optimizer = make_optimizer(model.parameters(), config.train, torch.device("cpu"))
    rows = []
    for step, batch in enumerate(loader_for(train_set, config, True, torch.device("cpu"))):
        if step == count:
            break
        model.train()
        out = model(batch)
        terms = model.loss(batch, out, 0)
        optimizer.zero_grad()
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        model.eval()
        with torch.no_grad():
            evaluated = model(batch)
            recon = model.reconstruction_error(evaluated.recon, batch["mel"]).mean()
        mu, logvar, kl = out.mu.detach(), out.logvar.detach(), terms["kl"].detach()
        rows.append({"step": step, "train_abs_mu": round(float(mu.abs().mean()), 3),
                     "train_max_logvar": round(float(logvar.max()), 2), "train_kl": float(kl),
                     "eval_abs_mu": round(float(evaluated.mu.abs().mean()), 3),
                     "eval_recon_per_feature": round(float(recon) / model.reconstructed_features, 3)})
        print(rows[-1], flush=True)
    return {"steps": rows}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=RESULTS, help="results file, appended to (default: "
                   "%(default)s)")
    p.add_argument("mode", choices=["fit", "steps"])
    p.add_argument("model", choices=list(MODELS))
    p.add_argument("tag", help="names the line in the results file")
    p.add_argument("overrides", nargs="*", help="config overrides, key=value")
    args = p.parse_args(argv)
    result = (fit if args.mode == "fit" else steps)(args.model, args.overrides)
    line = {"mode": args.mode, "model": args.model, "tag": args.tag, "overrides": args.overrides, **result}
    print(json.dumps({k: v for k, v in line.items() if k not in ("epochs", "steps")}))
    with args.out.open("a") as out:
        out.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
