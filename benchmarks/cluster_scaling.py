"""Trials per minute with 1 and 2 workers of one study on this machine, and what Ray costs per
trial against plain local workers, in one run (same machine state, same warm feature cache).

    python -m benchmarks.cluster_scaling [--trials 6] [--epochs 2] [--setups plain1,plain2,ray2]
                                         [--seconds 31] [--overrides 'k=v ...'] [--out FILE]

Tiny trials (basic_vae, 16 mel bins, 2 s windows) on a 12-song generated corpus (songs of
`--seconds` to 4 s more; --overrides are added to every trial's config). Three setups,
each a fresh journal-file study and MLflow store in a temp folder:
- plain, 1 worker: one `python -m pipelines.tune` process;
- plain, 2 workers: two such processes started together on the same study (the hand-made
  scale-out on one host);
- Ray, 2 workers: one `python -m pipelines.tune --tune.workers 2` (a local Ray instance, two
  tasks).
Ray's overhead per trial = (Ray 2 workers - plain 2 workers) wall seconds / trials: starting
Ray, scheduling and starting the task processes. --setups runs some of them (plain1, plain2, ray2);
a ratio whose setups did not run is null. Writes benchmarks/results/cluster_scaling.json
(or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from components.config import PROJECT_ROOT
from corpora.demo_corpus import generate_demo_corpus

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "cluster_scaling.json"
# --setups key: (name in the results, tune processes started, tune.workers of each)
SETUPS = {"plain1": ("plain, 1 worker", 1, 1), "plain2": ("plain, 2 workers", 2, 1),
          "ray2": ("Ray, 2 workers", 1, 2)}
TINY = ("features.n_mels=16 features.window_seconds=2.0 features.hop_seconds=1.0 "
        "features.min_tail_seconds=0.5 features.n_fft=512 features.hop_length=256 model.latent_dim=8 "
        "model.hidden_dims=[16,8] "
        "train.batch_size=8 train.kl_warmup_epochs=1 data.val_fraction=0.3 data.test_fraction=0.3 "
        "tracking.system_metrics=false tune.pruner=none tune.promote=false")


def run_setup(folder: Path, corpus: Path, cache: Path, processes: int, ray_workers: int, trials: int,
              epochs: int, extra: str) -> dict[str, float]:
    folder.mkdir()
    storage = folder / "optuna.log"
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
                        "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    overrides = (f"{TINY} data.source={corpus} data.cache_dir={cache} train.checkpoint_dir={folder / 'ckpt'} "
                 f"tune.storage={storage} tune.n_trials={trials} train.epochs={epochs} "
                 f"tune.workers={ray_workers} {extra}")
    command = [sys.executable, "-m", "pipelines.tune", "--model", "basic_vae", "--overrides", overrides]
    started = time.perf_counter()
    logs = [open(folder / f"worker-{i}.log", "w") for i in range(processes)]  # noqa: SIM115
    running = [subprocess.Popen(command, env=env, cwd=folder, stdout=log, stderr=log) for log in logs]
    if any(process.wait() for process in running):
        raise SystemExit(f"a tune process failed: {(folder / 'worker-0.log').read_text()[-2000:]}")
    seconds = time.perf_counter() - started
    study = optuna.load_study(study_name="basic_vae-genre", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(storage))))
    finished = len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))
    return {"trials_finished": finished, "wall_seconds": round(seconds, 1),
            "trials_per_minute": round(finished / seconds * 60, 2)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--setups", default=",".join(SETUPS), help=f"of {', '.join(SETUPS)}")
    p.add_argument("--seconds", type=float, default=31.0, help="shortest generated song; the longest is +4 s")
    p.add_argument("--overrides", default="", help="more config overrides for every trial, 'k=v k=v'")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    args = p.parse_args(argv)
    chosen = args.setups.split(",")
    if unknown := set(chosen) - set(SETUPS):
        p.error(f"unknown setups {sorted(unknown)}; choose from {', '.join(SETUPS)}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = generate_demo_corpus(root / "demo", songs_per_cell=1, min_seconds=args.seconds,
                                      max_seconds=args.seconds + 4)
        cache = root / "cache"
        # Warm the feature cache once, so every setup measures tuning only.
        run_setup(root / "warm-up", corpus, cache, 1, 1, 1, 1, args.overrides)
        result = {name: run_setup(root / name.replace(", ", "-").replace(" ", "_"), corpus,
                                  cache, processes, workers, args.trials, args.epochs, args.overrides)
                  for key, (name, processes, workers) in SETUPS.items() if key in chosen}
    one, plain, ray = (result.get(SETUPS[key][0]) for key in SETUPS)

    def speedup(two: dict[str, float] | None) -> float | None:
        return round(one["wall_seconds"] / two["wall_seconds"], 2) if one and two else None

    summary = {"trials": args.trials, "epochs": args.epochs, "cpu_count": os.cpu_count(), "setups": result,
               "speedup_2_workers_plain": speedup(plain), "speedup_2_workers_ray": speedup(ray),
               "ray_overhead_seconds_per_trial": round(
                   (ray["wall_seconds"] - plain["wall_seconds"]) / ray["trials_finished"], 1)
               if ray and plain else None}
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
