"""How much of each old score was selection and chance: the old protocol beside the declared one.

    python -m benchmarks.protocol [--epochs 8] [--models conv_vae,vade] [--overrides 'k=v ...'] [--out FILE]
    python -m benchmarks.protocol --rescore      # the runs of the last results file, scored again

Trains every architecture on the demo corpus (defaults, `--epochs` epochs), then scores the same
trained model two ways:

- old protocol (this platform until now): validation songs, every 30 s window a point, the
  best NMI of KMeans / Agglomerative / GMM (and VaDE's own 15 clusters) against the labels;
- declared protocol: test songs, one point per song, KMeans (eval.method), with the permutation
  null over songs (its mean and 95th percentile), the p-value and a bootstrap interval.

Between them: the same validation windows scored by the declared method alone (what picking the
best method added) and the window-level null that permutes songs, not windows. MFCC statistics
run through both. A CVAE's score on its own label is shown, marked, and is no result in either.
Writes benchmarks/results/protocol.json (or --out) and prints the table of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import mlflow
import numpy as np

from benchmarks.learning import logged_name, training_summary
from components.config import PROJECT_ROOT, logged_config
from components.data.dataset import TASKS
from components.data.lyrics import embed_lyrics
from components.data.preparation import prepare_features
from components.evaluation.clustering import cluster
from components.evaluation.mfcc_baseline import mfcc_statistics
from components.evaluation.scoring import Protocol, served_embeddings, served_scores
from components.evaluation.significance import Resampling, partition_scores
from components.models import MODELS
from components.tracking import mlflow_runs as tracking
from components.vocabulary import METHODS
from pipelines.train import main as train

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "protocol.json"
EXPERIMENT = "protocol-benchmark"


def old_protocol(embeddings: np.ndarray, labels: np.ndarray, songs: np.ndarray, own: np.ndarray | None,
                 methods: list[str], seed: int) -> dict[str, Any]:
    """Validation windows: the best NMI over methods (how scores were picked), the declared
    method's NMI alone, and the chance level of the declared method's partition with songs moving
    together (what the old protocol never showed)."""
    k = len(np.unique(labels))
    partitions = {m: cluster(embeddings, k, m, seed) for m in methods}
    if own is not None:
        partitions["own clusters"] = own
    nmi = {m: partition_scores(labels, p, songs, Resampling(permutations=0, bootstrap=0))["nmi"]
           for m, p in partitions.items()}
    best = max(nmi, key=nmi.get)
    declared = partition_scores(labels, partitions[methods[0]], songs, Resampling(bootstrap=0, seed=seed))
    return {"old_nmi": nmi[best], "old_method": best, "val_window_kmeans_nmi": nmi[methods[0]],
            "val_window_chance_mean": declared["nmi_chance_mean"],
            "val_window_chance_p95": declared["nmi_chance_p95"], "own_clusters_nmi": nmi.get("own clusters")}


def new_protocol(metrics: dict[str, float | str], task: str, variant: str | None) -> dict[str, Any]:
    prefix = f"test/{task}" + (f"/{variant}" if variant else "")
    keys = ("nmi", "ami", "nmi_ci_low", "nmi_ci_high", "nmi_chance_mean", "nmi_chance_p95", "nmi_p_value")
    return {f"test_{key}": metrics.get(f"{prefix}/{key}") for key in keys}


def score_run(run_id: str, seed: int) -> dict[str, dict[str, Any]]:
    """Both protocols on one trained run's logged model, computed here with today's code (not
    read from the run's metrics)."""
    run = mlflow.get_run(run_id)
    served, _, _ = tracking.load_served_model(run.data.tags["model_uri"])
    config = logged_config(tracking.training_run(run_id)[0])
    cache = prepare_features(config)
    lyrics = embed_lyrics(cache, config.lyrics, config.seed) if served.lyrics_dim else None
    test = served_scores(served, cache, "test", Protocol.from_config(config), config.seed, lyrics)
    embeddings, labels, songs, own, rows = served_embeddings(served, cache, "val", lyrics)
    mfcc = mfcc_statistics(cache, rows)
    out = {}
    for task in TASKS:
        conditioned = served.condition_on == task
        name = f"{task}_conditioned" if conditioned else task
        out[served.name + "/" + task] = {
            "model": served.name, "task": task, "label_conditioned": conditioned,
            **old_protocol(embeddings, labels[task], songs, own, list(METHODS), seed),
            **new_protocol(test, name, None)}
        if own is not None:  # VaDE's own 15 clusters: its own chance level, apart from k = classes
            own_null = partition_scores(labels[task], own, songs, Resampling(bootstrap=0, seed=seed))
            out[served.name + " own clusters/" + task] = {
                "model": f"{served.name} (own {served.vae.n_clusters} clusters)", "task": task,
                "label_conditioned": False, "old_nmi": own_null["nmi"], "old_method": "own clusters",
                "val_window_kmeans_nmi": None, "val_window_chance_mean": own_null["nmi_chance_mean"],
                "val_window_chance_p95": own_null["nmi_chance_p95"],
                **new_protocol(test, task, "own_clusters")}
        out["mfcc/" + task] = {
            "model": "MFCC statistics", "task": task, "label_conditioned": False,
            **old_protocol(mfcc, labels[task], songs, None, ["kmeans"], seed),
            **new_protocol(test, task, "mfcc")}
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| model | task | old: val windows, best method | val windows, KMeans | window chance "
             "(songs permuted) mean / p95 | new: test songs, KMeans [95% CI] | chance mean / p95 | p | "
             "verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["label_conditioned"]:
            verdict = "label-conditioned: no result"
        elif row["test_nmi_p_value"] is None:
            verdict = ""
        else:
            verdict = "beats chance" if row["test_nmi_p_value"] < 0.05 else "chance"
        new = ("" if row["test_nmi"] is None else
               f"{row['test_nmi']:.3f} [{row['test_nmi_ci_low']:.2f}, {row['test_nmi_ci_high']:.2f}]")
        chance = ("" if row["test_nmi_chance_mean"] is None else
                  f"{row['test_nmi_chance_mean']:.2f} / {row['test_nmi_chance_p95']:.2f}")
        p_value = "" if row["test_nmi_p_value"] is None else f"{row['test_nmi_p_value']:.3f}"
        declared = "" if row["val_window_kmeans_nmi"] is None else f"{row['val_window_kmeans_nmi']:.3f}"
        lines.append(f"| {row['model']} | {row['task']} | {row['old_nmi']:.3f} ({row['old_method']}) | "
                     f"{declared} | {row['val_window_chance_mean']:.2f} / "
                     f"{row['val_window_chance_p95']:.2f} | {new} | {chance} | {p_value} | {verdict} |")
    return "\n".join(lines) + "\n"


def run_rows(runs: dict[str, str]) -> list[dict[str, Any]]:
    """Per trained run, from its logged metrics: what training reached (best epoch, reconstruction
    per feature at initialisation and at the best epoch) and the test scores beside the same
    network untrained (mean of its initialisations), ARI and the true labels' silhouette."""
    rows = []
    for name, run_id in runs.items():
        row: dict[str, Any] = {"model": name, **training_summary(run_id)}
        metrics = row.pop("metrics")
        for task in TASKS:
            name_of = logged_name(metrics, task)
            for key in ("nmi", "ari", "silhouette_labels", "nmi_p_value", "untrained/nmi",
                        "untrained/nmi_std", "untrained/nmi_p_value"):
                row[f"{task}/{key}"] = metrics.get(f"test/{name_of}/{key}")
            row[f"{task}/label_conditioned"] = name_of != task
        rows.append(row)
    return rows


def run_markdown(rows: list[dict[str, Any]]) -> str:
    def cell(value: float | None, digits: int = 3) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    lines = ["| model | best epoch / run | val recon per feature: init -> best | task | test NMI (p) | "
             "untrained NMI, mean +- std of 3 | ARI | silhouette (labels) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for task in TASKS:
            if row[f"{task}/label_conditioned"]:
                scores = "label-conditioned: no result | | |"
            else:
                scores = (f"{cell(row[f'{task}/nmi'])} ({cell(row[f'{task}/nmi_p_value'])}) | "
                          f"{cell(row[f'{task}/untrained/nmi'])} +- "
                          f"{cell(row[f'{task}/untrained/nmi_std'])} | "
                          f"{cell(row[f'{task}/ari'])} | {cell(row[f'{task}/silhouette_labels'])}")
            lines.append(f"| {row['model']} | {row['best_epoch']} / {row['epochs']} | "
                         f"{cell(row['val_recon_per_feature_init'], 2)} -> "
                         f"{cell(row['val_recon_per_feature_best'], 2)} | {task} | {scores} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--overrides", default="", help="extra key=value config overrides for every run")
    p.add_argument("--rescore", action="store_true", help="score the runs named in the last results "
                   "file again (same tracking store) instead of training")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    args = p.parse_args(argv)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}")
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment(EXPERIMENT)
    os.environ["MLFLOW_EXPERIMENT_ID"] = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    rows: dict[str, dict[str, Any]] = {}
    previous = json.loads(args.out.read_text()) if args.rescore else {}
    runs = previous.get("runs", {})
    for name in list(runs) if args.rescore else args.models.split(","):  # rescore: every run of the file
        if not args.rescore:
            overrides = [f"train.epochs={args.epochs}", "tracking.system_metrics=false",
                         *args.overrides.split()]
            if name == "vade":
                overrides.append(f"model.pretrain_epochs={args.epochs}")
            runs[name] = train(["--model", name, "--overrides", " ".join(overrides)])
        rows |= score_run(runs[name], seed=0)
    if args.rescore:
        args.epochs, args.overrides = previous["epochs"], previous["overrides"]
    ordered = [row for key, row in rows.items() if not key.startswith("mfcc/")]
    ordered += [rows[f"mfcc/{task}"] for task in TASKS]  # the same songs for every run: shown once
    trained_at = {name: mlflow.get_run(run_id).data.tags.get("mlflow.source.git.commit")
                  for name, run_id in runs.items()}
    trained = run_rows(runs)
    args.out.write_text(json.dumps({"epochs": args.epochs, "overrides": args.overrides, "runs": runs,
                                   "trained_at_commit": trained_at, "rows": ordered,
                                   "runs_logged": trained}, indent=2) + "\n")
    print(markdown(ordered))
    print(run_markdown(trained))


if __name__ == "__main__":
    main()
