"""Tuning efficiency at an equal trial count: TPE with median pruning vs random search without
pruning, both through the real tune pipeline on the demo corpus, one after the other in one
process (same machine state, same data cache).

    python -m benchmarks.tuning_efficiency [--model basic_vae] [--trials 12] [--epochs 30]
                                           [--overrides 'k=v ...'] [--out FILE]

Reports per strategy: epochs trained (summed over trials), wall time, trials pruned and the best
validation NMI reached. Each strategy runs `python -m pipelines.tune` as its own process with its
own Optuna storage and MLflow store in a temp folder, its working directory (MLflow's fluent API
caches experiment ids per process, so two stores in one process do not mix; the store's default
artifact root ./mlruns lands there too). --overrides change the config of every trial (e.g.
data.source and smaller features for the smoke test). Writes
benchmarks/results/tuning_efficiency.json (or --out) and prints a markdown table.
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

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "tuning_efficiency.json"
STRATEGIES = {"tpe+median pruning": ("tpe", "median"), "random, no pruning": ("random", "none")}


def run_strategy(folder: Path, model: str, sampler: str, pruner: str, trials: int, epochs: int,
                 task: str, overrides: str) -> dict[str, float]:
    storage = f"sqlite:///{folder / 'optuna.db'}"
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
                        "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    settings = {"tune.storage": storage, "tune.sampler": sampler, "tune.pruner": pruner,
                "tune.n_trials": trials, "tune.task": task, "tune.promote": "false",
                "train.epochs": epochs, "train.checkpoint_dir": folder / "checkpoints",
                "tracking.system_metrics": "false"}
    args = [sys.executable, "-m", "pipelines.tune", "--model", model,
            *(item for key, value in settings.items() for item in (f"--{key}", str(value))),
            "--overrides", overrides or "none"]
    started = time.perf_counter()
    subprocess.run(args, env=env, cwd=folder, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    study = optuna.load_study(study_name=f"{model}-{task}", storage=storage)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    # Epochs trained = steps each trial reported (pruned trials stop early, early stopping too).
    epochs_spent = sum(len(t.intermediate_values) for t in finished)
    return {"trials": len(finished), "pruned": sum(t.state == TrialState.PRUNED for t in finished),
            "epochs_trained": epochs_spent, "wall_seconds": round(seconds, 1),
            "best_nmi": round(study.best_value, 4), "best_params": study.best_params}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="basic_vae")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--task", default="genre")
    p.add_argument("--overrides", default="", help="more config overrides, 'key=value key=value'")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    args = p.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (sampler, pruner) in STRATEGIES.items():
            folder = Path(tmp) / sampler
            folder.mkdir()
            results[label] = run_strategy(folder, args.model, sampler, pruner, args.trials, args.epochs,
                                          args.task, args.overrides)
    report = {"model": args.model, "trials": args.trials, "max_epochs": args.epochs, "task": args.task,
              "cpu_count": os.cpu_count(), "results": results}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"| strategy | trials | pruned | epochs trained | wall time | best val {args.task} NMI |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['trials']} | {r['pruned']} | {r['epochs_trained']} | "
              f"{r['wall_seconds'] / 60:.1f} min | {r['best_nmi']:.3f} |")


if __name__ == "__main__":
    main()
