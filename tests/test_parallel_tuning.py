"""Many tune workers on one study, as separate processes: on this host with the default journal
file and a local MLflow store, and scaled out with a PostgreSQL study storage and an MLflow
tracking server backed by PostgreSQL (a throw-away cluster and server on 127.0.0.1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from components.config import PROJECT_ROOT
from components.tracking import study as studies
from tests import postgres, servers
from tests.conftest import tune_args

WORKERS = 3

pytestmark = pytest.mark.slow  # servers or subprocesses: make test, not make test-fast


@dataclass
class Worker:
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_workers(n: int, args: list[str], folder: Path, env: dict[str, str]) -> list[Worker]:
    """n `python -m pipelines.tune` processes started together, each logging to its own file."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")} | {
        "PYTHONPATH": str(PROJECT_ROOT)} | env
    workers = []
    for i in range(n):
        log = folder / f"worker-{i}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "pipelines.tune", *args], cwd=folder,
                                       env=env, stdout=out, stderr=subprocess.STDOUT)
        workers.append(Worker(process, log))
    return workers


def wait_all(workers: list[Worker], timeout: float = 420) -> None:
    deadline = time.monotonic() + timeout
    try:
        for worker in workers:
            worker.process.wait(max(1.0, deadline - time.monotonic()))
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()


def check_study_and_runs(study: optuna.Study, client: mlflow.MlflowClient, n_trials: int,
                         survivors: list[Worker]) -> list[optuna.trial.FrozenTrial]:
    """The study holds n_trials finished trials (workers that were mid-trial when the count was
    reached finish theirs: at most one extra each), none lost to a storage error; every trial has
    its own nested run; one study run holds the workers' runs. Returns the finished trials."""
    for worker in survivors:
        assert worker.process.returncode == 0, worker.output()[-3000:]
        assert "database is locked" not in worker.output()
    finished = study.get_trials(states=studies.FINISHED)
    assert n_trials <= len(finished) <= n_trials + len(survivors) - 1
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(len(numbers))), "trial numbers are unique and gapless"
    retried = {t.system_attrs["failed_trial"] for t in study.trials if "failed_trial" in t.system_attrs}
    points = [tuple(sorted(t.params.items())) for t in study.trials if t.number not in retried
              and "failed_trial" not in t.system_attrs]
    assert len(set(points)) == len(points), "workers sampled the same parameters (one seed for all?)"

    parent = study.user_attrs["mlflow_parent_run_id"]
    run_ids = [t.user_attrs["mlflow_run_id"] for t in study.trials]
    assert len(set(run_ids)) == len(run_ids), "each trial has its own run"
    worker_runs = set()
    for trial, run_id in zip(study.trials, run_ids):
        run = client.get_run(run_id)
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        assert run.data.tags["optuna.study_name"] == study.study_name
        assert run.info.run_name == f"trial_{trial.number}"
        worker_runs.add(run.data.tags["mlflow.parentRunId"])
    # The trials nest under the runs of the workers that ran them; those nest under the study's run.
    for run_id in worker_runs - {parent}:
        assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == parent
    assert "mlflow.parentRunId" not in client.get_run(parent).data.tags
    return finished


def check_one_champion(client: mlflow.MlflowClient, study: optuna.Study) -> None:
    """Every worker promotes the study's best trial at its end: one version of that run results,
    and it is the champion."""
    best = study.best_trial.user_attrs["mlflow_run_id"]
    versions = client.search_model_versions("name = 'basic_vae'")
    assert [v.tags["run_id"] for v in versions].count(best) == 1, "the best run registered once"
    champion = client.get_model_version_by_alias("basic_vae", "champion")
    assert champion.tags["run_id"] == best


def test_local_workers_share_one_journal_study(tmp_path, corpus, mlflow_store):
    """The default local setup: Optuna's journal file and a SQLite tracking store, 3 workers at
    once, with nothing prepared beforehand (they also build the feature cache at the same time)."""
    args = tune_args(tmp_path, corpus, "basic_vae", "tune.n_trials=6", "tune.pruner=none",
                     "train.epochs=1")
    workers = start_workers(WORKERS, args, tmp_path, {})
    wait_all(workers)
    study = optuna.load_study(study_name="basic_vae-genre",
                              storage=studies.open_storage(str(tmp_path / "optuna.log"), 60, 0))
    client = mlflow.MlflowClient(mlflow_store)
    check_study_and_runs(study, client, 6, workers)
    check_one_champion(client, study)


@dataclass
class ScaledOut:
    cluster: postgres.Cluster
    tracking_uri: str
    folder: Path

    def worker_env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.tracking_uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}

    def storage(self, with_password: bool = False) -> str:
        return self.cluster.url("optuna", with_password)


@pytest.fixture(scope="module")
def scaled_out(tmp_path_factory) -> Iterator[ScaledOut]:
    """A PostgreSQL cluster (databases optuna and mlflow) and an MLflow tracking server on it,
    with a served artifact root, as a team would run them (docs/tuning.md: Tuning on many machines)."""
    if postgres.binaries() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs it")
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    folder = tmp_path_factory.mktemp("scaled-out")
    with postgres.cluster(("optuna", "mlflow")) as cluster:
        server = servers.mlflow_server(cluster.url("mlflow"), folder / "mlflow-server")
        server.env["PGPASSWORD"] = cluster.password  # the server's URL carries no password
        with servers.serving(server, timeout=240) as (url,):
            yield ScaledOut(cluster, url, folder)


def _study(scaled_out: ScaledOut, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=scaled_out.storage(with_password=True))


def test_workers_on_postgres_and_a_tracking_server_complete_one_study_when_one_is_killed(
        scaled_out, corpus, tmp_path):
    """3 workers on one study; one is SIGKILLed mid-trial. After 2 missed heartbeats (1 s each
    here) a survivor fails that trial, closes its run and runs it again; the study completes."""
    # The password is in the storage URL given to the workers: it must not reach any param, tag or log.
    args = tune_args(tmp_path, corpus, "basic_vae", "tune.n_trials=5", "tune.pruner=none",
                     "tune.heartbeat_seconds=1", "train.epochs=2", "train.early_stopping_patience=2",
                     f"tune.storage={scaled_out.storage(with_password=True)}", "tune.study=team")
    workers = start_workers(WORKERS, args, tmp_path, scaled_out.worker_env())
    victim, survivors = workers[0], workers[1:]
    try:
        deadline = time.monotonic() + 240
        dead = None
        while dead is None and time.monotonic() < deadline and victim.process.poll() is None:
            time.sleep(0.3)
            try:
                running = _study(scaled_out, "team").get_trials(states=(TrialState.RUNNING,))
            except KeyError:  # not created yet
                continue
            dead = next((t for t in running if t.user_attrs.get("worker", "").endswith(
                f":{victim.process.pid}") and t.user_attrs.get("mlflow_run_id")), None)
        assert dead is not None, f"worker 0 never ran a trial:\n{victim.output()[-3000:]}"
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait()
        wait_all(survivors)
    finally:
        wait_all(workers)

    study = _study(scaled_out, "team")
    client = mlflow.MlflowClient(scaled_out.tracking_uri)
    check_study_and_runs(study, client, 5, survivors)
    check_one_champion(client, study)

    assert study.trials[dead.number].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead.number]
    assert retry.state in studies.FINISHED and retry.params == dead.params
    assert not retry.user_attrs["worker"].endswith(f":{victim.process.pid}")
    dead_run = client.get_run(dead.user_attrs["mlflow_run_id"])
    assert dead_run.info.status == "FAILED" and "heartbeats" in dead_run.data.tags["error"]

    password = scaled_out.cluster.password
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) >= 5 + WORKERS
    for run in runs:
        assert password not in str(run.data.params) and password not in str(run.data.tags), run.info.run_id
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.data.tags["optuna.storage"] == scaled_out.storage().replace("tuner@", "tuner:***@")
    assert parent.data.params["tune.storage"] == parent.data.tags["optuna.storage"]
    for worker in survivors:
        assert password not in worker.output()
