"""What training buys: every architecture trained with the defaults, on the demo corpus and
on a corpus of recorded music, read against the same network untrained and against MFCC statistics.

    python -m benchmarks.learning [--corpora demo,/work/corpora_cache/recorded/metadata.csv]
                                  [--models conv_vae,vade] [--epochs 8] [--overrides 'k=v ...']
                                  [--out FILE]
    python -m benchmarks.learning --rescore      # the table again from the runs of the last results

Per (corpus, architecture), one `pipelines.train` run (its own train / val / test songs; the defaults'
recipe, `--epochs` epochs; VaDE pretrains as many) and, from that run's logged metrics:
reconstruction per feature of val at initialisation and at the best epoch (1.0 = each bin's train
mean), the best epoch, and on the TEST songs (song level, KMeans, the declared protocol) the NMI
and AMI of the trained weights, of the same network untrained (mean +- std of eval.untrained_inits
initialisations) and of MFCC statistics, each with its permutation chance level, p-value and
bootstrap interval. Writes benchmarks/results/learning.json (or --out); prints the tables of
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import mlflow

from components.config import PROJECT_ROOT
from components.data.dataset import TASKS
from components.models import MODELS
from pipelines.train import main as train

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "learning.json"
EXPERIMENT = "learning-benchmark"
SCORES = ("nmi", "ami", "nmi_ci_low", "nmi_ci_high", "nmi_chance_mean", "nmi_chance_p95", "nmi_p_value")


def logged_name(metrics: dict[str, float], task: str) -> str:
    """The name a run's test scores for a task are logged under: the task, or <task>_conditioned
    for a model given that label."""
    return task if f"test/{task}/nmi" in metrics else f"{task}_conditioned"


def training_summary(run_id: str) -> dict[str, Any]:
    """What training reached in a run: best epoch, epochs run, validation reconstruction per
    feature at initialisation and at the best epoch; and its logged metrics."""
    client = mlflow.MlflowClient()
    metrics = client.get_run(run_id).data.metrics
    best = int(metrics["train/best_epoch"])
    history = client.get_metric_history(run_id, "val/recon_per_feature")
    return {"best_epoch": best, "epochs": int(metrics["train/epochs_run"]),
            "val_recon_per_feature_init": metrics.get("val/recon_per_feature_init"),
            "val_recon_per_feature_best": next((m.value for m in history if m.step == best), None),
            "metrics": metrics}


def run_row(corpus: str, name: str, run_id: str) -> dict[str, Any]:
    """One trained run, from its logged metrics."""
    row: dict[str, Any] = {"corpus": corpus, "model": name, "run": run_id, **training_summary(run_id)}
    metrics = row.pop("metrics")
    for task in TASKS:
        logged = logged_name(metrics, task)
        row[f"{task}/label_conditioned"] = logged != task
        for variant, prefix in (("trained", f"test/{logged}"), ("untrained", f"test/{logged}/untrained"),
                                ("mfcc", f"test/{task}/mfcc")):
            for key in SCORES:
                row[f"{task}/{variant}/{key}"] = metrics.get(f"{prefix}/{key}")
        row[f"{task}/untrained/nmi_std"] = metrics.get(f"test/{logged}/untrained/nmi_std")
    return row


def verdict(row: dict[str, Any], task: str) -> str:
    """Plain words: does the trained model beat chance, its untrained self, and MFCC?"""
    if row[f"{task}/label_conditioned"]:
        return "label-conditioned: no result"
    nmi, p = row[f"{task}/trained/nmi"], row[f"{task}/trained/nmi_p_value"]
    if nmi is None or p is None:
        return "unscored"
    words = ["beats chance" if p < 0.05 else "chance"]
    untrained = row[f"{task}/untrained/nmi"]
    if untrained is not None:
        words.append("above untrained" if nmi > untrained else "NOT above untrained")
    mfcc = row[f"{task}/mfcc/nmi"]
    if mfcc is not None:
        words.append("above MFCC" if nmi > mfcc else "below MFCC")
    return ", ".join(words)


def markdown(rows: list[dict[str, Any]]) -> str:
    def cell(value: float | None, digits: int = 3) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    def scored(row: dict[str, Any], task: str, variant: str) -> str:
        key = f"{task}/{variant}/"
        if row[key + "nmi"] is None:
            return "n/a"
        spread = (f" +- {cell(row[f'{task}/untrained/nmi_std'], 2)}" if variant == "untrained" else
                  f" [{cell(row[key + 'nmi_ci_low'], 2)}, {cell(row[key + 'nmi_ci_high'], 2)}]")
        return (f"{cell(row[key + 'nmi'])}{spread} (AMI {cell(row[key + 'ami'], 2)}, "
                f"p {cell(row[key + 'nmi_p_value'])})")

    lines = ["| corpus | model | best epoch / run | val recon per feature: init -> best | task | "
             "test NMI trained [95% CI] | untrained, mean +- std | MFCC [95% CI] | chance mean / p95 | "
             "verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for task in TASKS:
            lines.append(
                f"| {row['corpus']} | {row['model']} | {row['best_epoch']} / {row['epochs']} | "
                f"{cell(row['val_recon_per_feature_init'], 2)} -> "
                f"{cell(row['val_recon_per_feature_best'], 2)} | {task} | {scored(row, task, 'trained')} | "
                f"{scored(row, task, 'untrained')} | "
                f"{scored(row, task, 'mfcc')} | {cell(row[f'{task}/trained/nmi_chance_mean'], 2)} / "
                f"{cell(row[f'{task}/trained/nmi_chance_p95'], 2)} | {verdict(row, task)} |")
    return "\n".join(lines) + "\n"


def corpus_name(source: str) -> str:
    return "demo" if source == "demo" else os.path.basename(os.path.dirname(os.path.abspath(source)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpora", default="demo", help="comma-separated data sources: demo, metadata.csv paths")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--overrides", default="", help="extra key=value config overrides for every run")
    p.add_argument("--rescore", action="store_true", help="rebuild the table from the last results' runs")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    args = p.parse_args(argv)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}")
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment(EXPERIMENT)
    os.environ["MLFLOW_EXPERIMENT_ID"] = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    runs: dict[str, dict[str, str]] = previous.get("runs", {}) if args.rescore else {}
    if not args.rescore:
        for source in args.corpora.split(","):
            corpus = corpus_name(source)
            for name in args.models.split(","):
                overrides = [f"train.epochs={args.epochs}", "tracking.system_metrics=false",
                             *args.overrides.split()]
                if MODELS[name].__name__ == "VaDE":
                    overrides.append(f"model.pretrain_epochs={args.epochs}")
                run_id = train(["--model", name, "--data", source, "--overrides", " ".join(overrides)])
                runs.setdefault(corpus, {})[name] = run_id
                # Written after every run: a long benchmark interrupted keeps what it measured.
                args.out.write_text(json.dumps({"epochs": args.epochs, "overrides": args.overrides,
                                               "runs": runs}, indent=2) + "\n")
    rows = [run_row(corpus, name, run_id) for corpus, named in runs.items() for name, run_id in named.items()]
    trained_at = {run_id: mlflow.get_run(run_id).data.tags.get("mlflow.source.git.commit")
                  for named in runs.values() for run_id in named.values()}
    args.out.write_text(json.dumps({"epochs": previous.get("epochs") if args.rescore else args.epochs,
                                   "overrides": previous.get("overrides") if args.rescore else args.overrides,
                                   "runs": runs, "trained_at_commit": trained_at, "rows": rows},
                                  indent=2) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
