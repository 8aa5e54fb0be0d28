"""The tune pipeline on real Optuna storages (journal file, SQLite) and a real MLflow store, tiny shapes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from optuna.trial import FrozenTrial, TrialState

from components.config import PROJECT_ROOT, ConfigError, load_config
from components.tracking import mlflow_runs as tracking
from components.tracking import registry
from components.tracking import study as studies
from components.tracking.redaction import masked
from pipelines import tune, tuning_study
from tests.conftest import tiny_overrides, tune_args

pytestmark = pytest.mark.slow  # servers or subprocesses: make test, not make test-fast


def load_study(tmp_path: Path, name: str, storage: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=studies.open_storage(
        storage or str(tmp_path / "optuna.log"), 60, 0))


def runs_by_name() -> dict[str, mlflow.entities.Run]:
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return {r.info.run_name: r for r in runs}


def test_study_links_trials_and_nested_runs_and_resumes(tmp_path, corpus, mlflow_store):
    args = tune_args(tmp_path, corpus, "basic_vae", "tune.n_trials=2", "tune.sampler=random")
    parent_id = tune.main(args)

    study = load_study(tmp_path, "basic_vae-genre")
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2 and study.metric_names == ["val/genre/nmi"]
    assert study.user_attrs["mlflow_parent_run_id"] == parent_id
    runs = runs_by_name()
    for trial in trials:
        run = mlflow.get_run(trial.user_attrs["mlflow_run_id"])  # trial -> run
        assert run.info.run_name == f"trial_{trial.number}" and run.info.status == "FINISHED"
        assert run.data.tags["optuna.study_name"] == "basic_vae-genre"  # run -> trial
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        assert run.data.metrics["val/genre/nmi"] == pytest.approx(trial.value)
        assert run.data.params["train.lr"] == str(trial.params["train.lr"])  # suggested value was used
        # Intermediate values reported to the pruner are the run's per-epoch val NMI.
        curve = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val/genre_nmi")
        assert {m.step: m.value for m in curve} == pytest.approx(trial.intermediate_values)
        assert not (tmp_path / "checkpoints" / run.info.run_id).exists()  # cleaned after the trial
    parent = runs["tune-basic_vae-genre"]
    best = max(trials, key=lambda t: t.value)
    assert parent.data.metrics["best/val_genre_nmi"] == pytest.approx(best.value)
    assert parent.data.tags["best_trial.run_id"] == best.user_attrs["mlflow_run_id"]
    assert parent.data.metrics["trials/complete"] == 2
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent_id, "optuna")}
    assert {"optuna/optimization_history.png", "optuna/parallel_coordinate.png"} <= artifacts
    # The best trial's model was registered and, as the first version, became the champion.
    (champion,) = [c for c in registry.champions() if c.name == "basic_vae"]
    assert champion.run_id == best.user_attrs["mlflow_run_id"] and champion.study == "basic_vae-genre"
    assert champion.metrics["val/genre/nmi"] == pytest.approx(best.value)

    # Rerunning the same study resumes it: one more trial to reach 3, under a worker run that
    # nests beneath the study's run.
    worker_id = tune.main(tune_args(tmp_path, corpus, "basic_vae", "tune.n_trials=3", "tune.sampler=random"))
    study = load_study(tmp_path, "basic_vae-genre")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    worker = mlflow.get_run(worker_id)
    assert worker.data.tags["mlflow.parentRunId"] == parent_id
    third = study.trials[-1]
    assert mlflow.get_run(third.user_attrs["mlflow_run_id"]).data.tags["mlflow.parentRunId"] == worker_id
    assert mlflow.get_run(parent_id).data.metrics["trials/complete"] == 3
    # A finished study reruns without training anything more.
    tune.main(tune_args(tmp_path, corpus, "basic_vae", "tune.n_trials=3"))
    assert len(load_study(tmp_path, "basic_vae-genre").trials) == 3


def test_a_pruned_trial_stops_its_run_as_killed(tmp_path, corpus, mlflow_store):
    """A real pruner that prunes everything (NMI can never exceed 1.5) after the first epoch."""
    config = load_config("basic_vae", tune_args_overrides(tmp_path, corpus, "train.epochs=3"))
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=1.5, n_warmup_steps=0))
    base = tune_args_overrides(tmp_path, corpus, "train.epochs=3")
    mlflow.set_experiment("prune")
    with mlflow.start_run(run_name="parent"):
        study.optimize(tuning_study.make_objective("basic_vae", base, config, study), n_trials=1)
    (trial,) = study.trials
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [0]
    run = mlflow.get_run(trial.user_attrs["mlflow_run_id"])
    assert run.info.status == "KILLED"
    assert run.data.tags["stopped"].startswith("TrialPruned: pruned after epoch 0")
    assert "error" not in run.data.tags


def tune_args_overrides(tmp_path: Path, corpus: Path, *extra: str) -> list[str]:
    return tiny_overrides(tmp_path, "model.hidden_dims=[16,8]", f"data.source={corpus}", *extra)


def test_both_tasks_is_a_two_objective_study_with_a_pareto_front(tmp_path, corpus, mlflow_store):
    parent_id = tune.main(tune_args(tmp_path, corpus, "basic_vae", "tune.task=both", "tune.n_trials=2",
                                    "train.epochs=1"))
    study = load_study(tmp_path, "basic_vae-both")
    assert study.metric_names == ["val/genre/nmi", "val/language/nmi"] and len(study.directions) == 2
    assert all(len(t.values) == 2 and not t.intermediate_values for t in study.trials)
    parent = mlflow.get_run(parent_id)
    assert {"best/val_genre_nmi", "best/val_language_nmi"} <= set(parent.data.metrics)
    plots = {a.path for a in mlflow.MlflowClient().list_artifacts(parent_id, "optuna")}
    assert "optuna/pareto_front.png" in plots


def _kill_worker_mid_trial(tmp_path: Path, args: list[str], storage: str | None = None) -> FrozenTrial:
    """Start a tune worker on slow trials, SIGKILL it once a trial is running; that trial."""
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.tune", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                running = load_study(tmp_path, "basic_vae-genre", storage).get_trials(
                    states=(TrialState.RUNNING,))
            except KeyError:  # the study is not created yet
                running = []
            if running and running[0].user_attrs.get("mlflow_run_id"):
                return running[0]
            time.sleep(0.5)
        pytest.fail("the worker never started a trial")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()  # reaped: its pid no longer exists


SLOW = ("tune.n_trials=1", "train.epochs=200", "train.early_stopping_patience=200")


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_trial_whose_worker_died_is_failed_and_retried(tmp_path, corpus, mlflow_store, kind):
    """RDB storages find the dead worker by its missing heartbeats (1 s here); the default
    journal file by its process being gone from this host."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}" if kind == "sqlite" else str(tmp_path / "optuna.log")
    settings = (f"tune.storage={storage}", "tune.heartbeat_seconds=1")
    dead = _kill_worker_mid_trial(tmp_path, tune_args(tmp_path, corpus, "basic_vae", *SLOW, *settings),
                                  storage)
    if kind == "sqlite":
        time.sleep(3)  # past the grace period (2 heartbeats)

    # Worker 2 joins the same study with a short training: the dead trial is failed and retried.
    tune.main(tune_args(tmp_path, corpus, "basic_vae", "tune.n_trials=1", *settings))
    study = load_study(tmp_path, "basic_vae-genre", storage)
    assert study.trials[dead.number].state == TrialState.FAIL
    (retried,) = study.get_trials(states=(TrialState.COMPLETE,))
    assert retried.params == dead.params
    assert retried.system_attrs["failed_trial"] == dead.number
    dead_run = mlflow.get_run(dead.user_attrs["mlflow_run_id"])
    assert dead_run.info.status == "FAILED" and "re-enqueued" in dead_run.data.tags["error"]


def test_mlproject_tune_defaults_match_the_config_defaults():
    spec = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())["entry_points"]["tune"]["parameters"]
    defaults = yaml.safe_load((PROJECT_ROOT / "experiments" / "defaults.yaml").read_text())["tune"]
    for name, param in spec.items():
        if name in defaults:
            assert yaml.safe_load(str(param["default"])) == defaults[name], name


def test_a_cvae_is_not_tuned_for_its_own_label():
    with pytest.raises(ConfigError, match="conditioned on genre.*tune.task=language"):
        studies.check_task(load_config("cvae_genre", ["tune.task=genre"]))
    with pytest.raises(ConfigError, match="conditioned on language"):
        studies.check_task(load_config("cvae_language", ["tune.task=both"]))
    studies.check_task(load_config("cvae_genre", ["tune.task=language"]))


def test_bad_tune_settings_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="tune.task='mood'"):
        studies.objective_metrics("mood")
    with pytest.raises(ConfigError, match="tune.sampler='grid'"):
        studies.make_sampler("grid", 0)
    with pytest.raises(ConfigError, match="tune.storage='redis://u:\\*\\*\\*@host/0' is not an RDB URL"):
        studies.open_storage("redis://u:secret@host/0", 60, 2)
    # Reopening a study with another architecture is refused rather than mixing trials.
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    studies.open_study(load_config("basic_vae", [f"tune.storage={storage}", "tune.study=s"]))
    with pytest.raises(ConfigError, match="tunes basic_vae, not conv_vae"):
        studies.open_study(load_config("conv_vae", [f"tune.storage={storage}", "tune.study=s"]))


def test_pruners_follow_the_epoch_budget():
    hyperband = studies.make_pruner("hyperband", warmup_epochs=3, max_epochs=2)
    assert (hyperband._min_resource, hyperband._max_resource) == (2, 2)
    median = studies.make_pruner("median", warmup_epochs=3, max_epochs=30)
    assert isinstance(median, optuna.pruners.MedianPruner) and median._n_warmup_steps == 3
    with pytest.raises(ConfigError, match="tune.pruner='asha'"):
        studies.make_pruner("asha", 3, 30)


def test_passwords_are_masked():
    assert masked("postgresql://optuna:hunter2@db:5432/studies") == "postgresql://optuna:***@db:5432/studies"
    assert masked("sqlite:////tmp/optuna.db") == "sqlite:////tmp/optuna.db"


def test_a_password_that_mlflow_run_logged_is_reported(mlflow_store, capsys):
    url = "postgresql://optuna:hunter2@db:5432/studies"
    with mlflow.start_run():
        mlflow.log_params({"storage": url, "tune.storage": masked(url)})  # as `mlflow run -P` and we log
        tracking.warn_if_password_logged(url)
        tracking.warn_if_password_logged("postgresql://optuna@db:5432/studies")  # PGPASSWORD: nothing to say
    err = capsys.readouterr().err
    assert err.count("warning:") == 1
    assert "password in param(s) storage of run" in err and "PGPASSWORD" in err and "hunter2" not in err


def test_no_test_song_reaches_training_pruning_the_objective_or_promotion(tmp_path, corpus, mlflow_store,
                                                                         monkeypatch):
    """Every window read from the cache is recorded with the phase it was read in: the windows of
    test songs are read only by the final evaluation of a trained model, after its fit, its
    pruning reports and its val scores (the objective) are done."""
    from components.data.feature_cache import FeatureCache
    from pipelines import training_run as train_pipeline

    reporting = []
    reads: list[tuple[bool, set[int]]] = []
    original_read, original_evaluate = FeatureCache.read, train_pipeline.evaluate

    def read(self, rows):
        reads.append((bool(reporting), {int(r) for r in rows}))
        return original_read(self, rows)

    def evaluate(*args, **kwargs):
        reporting.append(True)
        try:
            return original_evaluate(*args, **kwargs)
        finally:
            reporting.pop()

    monkeypatch.setattr(FeatureCache, "read", read)
    monkeypatch.setattr(train_pipeline, "evaluate", evaluate)
    tune.main(tune_args(tmp_path, corpus, "basic_vae", "tune.n_trials=2", "tune.sampler=random",
                        "tune.pruner=median"))
    cache_rows = next(iter(_caches(tmp_path))).rows
    test_rows = set(cache_rows.row[cache_rows.split == "test"])
    assert test_rows and len(set(cache_rows.song_id[cache_rows.split == "test"])) == 4
    read_before_report = set().union(*(rows for during, rows in reads if not during))
    assert not read_before_report & test_rows
    assert test_rows <= set().union(*(rows for during, rows in reads if during))  # scored, once trained
    # The objective and promotion read val scores; the test scores were there and were ignored.
    study = load_study(tmp_path, "basic_vae-genre")
    for trial in study.trials:
        metrics = mlflow.get_run(trial.user_attrs["mlflow_run_id"]).data.metrics
        assert trial.value == metrics["val/genre/nmi"] and "test/genre/nmi" in metrics
    (champion,) = [c for c in registry.champions() if c.name == "basic_vae"]
    assert champion.metrics["val/genre/nmi"] == max(t.value for t in study.trials)


def _caches(tmp_path: Path):
    """The caches under tmp_path with their (only) split applied."""
    import pandas as pd

    from components.data.feature_cache import open_cache

    for path in (tmp_path / "cache").iterdir():
        cache = open_cache(path)
        if cache is not None:
            (split,) = (path / "splits").glob("*/split.csv")
            assigned = pd.read_csv(split, dtype=str)
            cache.rows["split"] = cache.rows.song_id.map(dict(zip(assigned.song_id, assigned.split)))
            yield cache
