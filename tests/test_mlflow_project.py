"""`mlflow run .` itself (MLproject, -P overrides, param logging) on a tiny corpus."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import optuna
import pytest

from components.config import PROJECT_ROOT
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow  # servers or subprocesses: make test, not make test-fast


def test_mlflow_run_trains_and_accepts_undeclared_overrides(tmp_path, corpus, mlflow_store):
    overrides = " ".join(tiny_overrides(tmp_path, "model.hidden_dims=[8,16]", "train.epochs=1"))
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), "run", str(PROJECT_ROOT), "--env-manager", "local",
         "-P", "model=basic_vae", "-P", f"data={corpus}",
         "-P", f"overrides={overrides} model.hidden_dims=[16,8]",
         "-P", "train.lr=1e-3"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED"
    assert run.data.params["model"] == "basic_vae" and run.data.params["train.lr"] == "1e-3"
    assert run.data.params["model.hidden_dims"] == "[16, 8]"
    assert "test/genre/nmi" in run.data.metrics and "test/language/nmi_p_value" in run.data.metrics


def test_mlflow_run_rejects_an_unknown_model(tmp_path, mlflow_store):
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), "run", str(PROJECT_ROOT), "--env-manager", "local",
         "-P", "model=resnet_vae"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert re.search(r"unknown model 'resnet_vae'\.( Did you mean \w+\?)? Valid models: basic_vae, beta_vae, "
                     r"conv_vae", result.stderr)


def test_mlflow_run_tune_entry_point(tmp_path, corpus, mlflow_store):
    """`mlflow run . -e tune -P model=... -P n_trials=N`: the project run is the study's run."""
    overrides = " ".join(tiny_overrides(tmp_path, "model.hidden_dims=[16,8]", "train.epochs=1"))
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), "run", str(PROJECT_ROOT), "-e", "tune",
         "--env-manager", "local", "-P", "model=basic_vae", "-P", "n_trials=1", "-P", f"data={corpus}",
         "-P", f"storage={storage}", "-P", "study=project-study", "-P", f"overrides={overrides}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (trial,) = optuna.load_study(study_name="project-study", storage=storage).trials
    runs = {r.info.run_name: r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")}
    child = runs["trial_0"]
    assert child.info.run_id == trial.user_attrs["mlflow_run_id"] and child.info.status == "FINISHED"
    parent = mlflow.get_run(child.data.tags["mlflow.parentRunId"])
    assert parent.data.params["n_trials"] == "1" and parent.data.tags["optuna.study_name"] == "project-study"
    assert parent.info.status == "FINISHED" and "best/val_genre_nmi" in parent.data.metrics


def test_mlflow_run_evaluate_entry_point_scores_the_champion(tmp_path, corpus, mlflow_store):
    """`mlflow run . -e evaluate -P model_uri=models:/<name>@champion`: its own run, test scores."""
    from components.tracking.registry import promote
    from pipelines.train import main as train

    overrides = tiny_overrides(tmp_path, "model.hidden_dims=[16,8]", "train.epochs=1")
    trained = train(["--model", "basic_vae", "--data", str(corpus), "--overrides", " ".join(overrides)])
    promote(trained, "genre")
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "mlflow"), "run", str(PROJECT_ROOT), "-e", "evaluate",
         "--env-manager", "local", "-P", "model_uri=models:/basic_vae@champion"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test genre (songs, kmeans): model NMI" in result.stdout
    runs = [r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
            if r.data.tags.get("source_run_id") == trained]
    (run,) = runs
    assert run.info.status == "FINISHED" and run.data.params["model_uri"] == "models:/basic_vae@champion"
    assert run.data.metrics["test/genre/nmi"] == mlflow.get_run(trained).data.metrics["test/genre/nmi"]
