"""Screenshots of both dashboards for the README and docs/dashboards.md, from a small real study.

    python -m benchmarks.dashboard_screenshots [--trials 8] [--epochs 6] [--task genre] [--workdir DIR]
                                               [--overrides 'k=v ...'] [--out DIR]

Tunes full-size basic_vae on the demo corpus (generated into data/demo if missing; features from
the project's cache/) through the real tune pipeline into a temporary Optuna storage and MLflow
store, starts optuna-dashboard and the MLflow server on them with the code the dashboard test
uses (tests/servers.py), and lets headless Chromium write
benchmarks/results/screenshots/mlflow_compare_runs.png (the run comparison of the study's
best finished trials) and optuna_dashboard_study.png (the study page), or into --out. Needs
`chromium`. With --workdir the stores are kept there, and a rerun resumes the finished study
instead of tuning again. --overrides change every trial's config (the smoke test's small corpus
and features).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from contextlib import chdir
from pathlib import Path

import mlflow
import optuna
from optuna.trial import TrialState

from components.config import PROJECT_ROOT
from pipelines import tune
from tests import servers

OUT = PROJECT_ROOT / "benchmarks" / "results" / "screenshots"


def make_study(folder: Path, trials: int, epochs: int, task: str, overrides: str) -> tuple[str, str]:
    """Run the study into folder; returns (optuna storage URL, MLflow tracking URI)."""
    storage, tracking = f"sqlite:///{folder / 'optuna.db'}", f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = tracking
    mlflow.set_tracking_uri(tracking)
    # MLflow's default artifact root is ./mlruns: the temp folder's, not the project's. No registry
    # promotion: these runs are throwaway, and the pictures show tracking only.
    with chdir(folder):
        tune.main(["--model", "basic_vae", "--tune.storage", storage, "--tune.n_trials", str(trials),
                   "--tune.task", task, "--tune.promote", "false", "--train.epochs", str(epochs),
                   "--train.checkpoint_dir", str(folder / "checkpoints"),
                   "--tracking.system_metrics", "false", "--overrides", overrides or "none"])
    return storage, tracking


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--task", default="genre", choices=["genre", "language", "both"])
    p.add_argument("--compare", type=int, default=3, help="how many of the best trials' runs to compare")
    p.add_argument("--workdir", type=Path, help="keep the stores here (default: a temporary folder)")
    p.add_argument("--overrides", default="", help="more config overrides for every trial, 'k=v k=v'")
    p.add_argument("--out", type=Path, default=OUT, help="folder of the screenshots (default: %(default)s)")
    args = p.parse_args(argv)
    if servers.chromium_binary() is None:
        raise SystemExit("error: chromium is not installed (Debian: apt-get install -y chromium)")
    warnings.filterwarnings("ignore", category=UserWarning)  # matplotlib / importance chatter
    with tempfile.TemporaryDirectory(prefix="dashboards-") as tmp:
        folder = args.workdir.resolve() if args.workdir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        storage, tracking = make_study(folder, args.trials, args.epochs, args.task, args.overrides)
        study = optuna.load_study(study_name=f"basic_vae-{args.task}", storage=storage)
        best = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: -t.values[0])
        run_ids = [t.user_attrs["mlflow_run_id"] for t in best][: args.compare]
        experiment = mlflow.get_run(run_ids[0]).info.experiment_id
        with servers.serving(servers.mlflow_server(tracking, folder / "mlflow-server"),
                             servers.optuna_dashboard(storage, folder / "optuna-dashboard")) as urls:
            mlflow_url, optuna_url = urls
            study_id, _ = servers.served_study(optuna_url, study.study_name)
            shots = {
                "mlflow_compare_runs.png": (servers.compare_runs_url(mlflow_url, run_ids, [experiment]),
                                            1600, 1300),
                "optuna_dashboard_study.png": (servers.study_page_url(optuna_url, study_id), 1400, 1300),
            }
            for name, (url, width, height) in shots.items():
                servers.screenshot(url, args.out / name, width, height)
                print(f"{args.out / name}: {url}")


if __name__ == "__main__":
    main()
