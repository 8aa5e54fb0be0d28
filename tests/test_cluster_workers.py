"""tune.workers > 1: the study's workers as Ray tasks on Ray's own local cluster (127.0.0.1, this
machine's 2 CPUs), one of them SIGKILLed mid-trial; the same checks as the PostgreSQL scale-out
test: the study completes, the killed trial is failed and retried once with its parameters, its
MLflow run ends FAILED, and no trial is lost or run twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import mlflow
import psutil
import pytest
from optuna.trial import TrialState

from components.config import PROJECT_ROOT, load_config
from components.errors import ConfigError
from components.tracking.cluster_workers import check_cluster_storage
from pipelines import tune
from tests.conftest import tune_args
from tests.test_tune import load_study

# Trials short enough for CI: the protocol's resampling and baselines cut down (not what is tested).
QUICK = ("eval.permutations=20", "eval.bootstrap=20", "eval.untrained_inits=1", "eval.other_methods=[]",
         "tune.pruner=none")


def _kill_one_running_worker(tmp_path, killed: list, stop: threading.Event) -> None:
    """SIGKILL the process of the first trial seen running with its MLflow run started."""
    while not stop.is_set() and not killed:
        try:
            running = load_study(tmp_path, "basic_vae-genre").get_trials(states=(TrialState.RUNNING,))
        except KeyError:  # the study is not created yet
            running = []
        started = [t for t in running if t.user_attrs.get("mlflow_run_id") and t.user_attrs.get("worker")]
        if started:
            pid = int(started[0].user_attrs["worker"].rpartition(":")[2])
            os.kill(pid, signal.SIGKILL)
            killed.append(started[0])
        time.sleep(0.3)


@pytest.mark.slow
def test_two_ray_workers_absorb_a_killed_worker_and_complete_the_study(tmp_path, corpus, mlflow_store):
    """On a Ray node with 2 (logical) GPUs, one per worker: Ray pins each worker to its own."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 2})
    killed: list = []
    stop = threading.Event()
    watcher = threading.Thread(target=_kill_one_running_worker, args=(tmp_path, killed, stop), daemon=True)
    watcher.start()
    try:
        driver = tune.main(tune_args(tmp_path, corpus, "basic_vae", "tune.n_trials=2", "tune.workers=2",
                                     "tune.gpus_per_trial=1", f"tune.cluster={cluster.address}",
                                     "train.epochs=3", *QUICK))
    finally:
        stop.set()
        watcher.join()
        cluster.shutdown()
    assert killed, "no trial was seen running"
    (dead,) = killed
    study = load_study(tmp_path, "basic_vae-genre")
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) >= 2  # the study completed (a worker may start one more: Optuna's overshoot)
    assert [t.number for t in study.get_trials(states=(TrialState.FAIL,))] == [dead.number]
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE and retries[0].params == dead.params
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))  # nothing lost
    dead_run = mlflow.get_run(dead.user_attrs["mlflow_run_id"])
    assert dead_run.info.status == "FAILED"
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    trial_runs = [r for r in runs if "optuna.trial_number" in r.data.tags]
    numbers = sorted(int(r.data.tags["optuna.trial_number"]) for r in trial_runs)
    assert numbers == [t.number for t in study.trials]  # one run per trial
    workers = [r for r in runs if r.data.tags.get("tune.role") == "worker"]
    assert len(workers) >= 2 and {r.data.tags["mlflow.parentRunId"] for r in workers} == {driver}
    assert {r.data.tags["tune.cuda_visible_devices"] for r in workers} == {"0", "1"}  # one GPU each
    assert mlflow.get_run(driver).data.metrics["trials/complete"] == len(finished)


def test_workers_on_other_hosts_need_a_shared_study_storage_and_a_tracking_server():
    with pytest.raises(ConfigError, match="tune.cluster=head:6379: .*tune.storage=postgresql"):
        check_cluster_storage(load_config("basic_vae", ["tune.cluster=head:6379"]).tune, "http://head:5000")
    with pytest.raises(ConfigError, match="need a tracking server; set MLFLOW_TRACKING_URI=http"):
        check_cluster_storage(load_config("basic_vae", ["tune.cluster=head:6379",
                                                        "tune.storage=postgresql://u@head/optuna"]).tune,
                              "sqlite:///mlflow.db")
    check_cluster_storage(load_config("basic_vae", ["tune.cluster=auto"]).tune, "sqlite:///mlflow.db")


@pytest.mark.slow
def test_ctrl_c_on_the_driver_stops_every_worker_and_the_study_resumes(tmp_path, corpus, mlflow_store):
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}
    slow = ["tune.n_trials=2", "tune.workers=2", "train.epochs=300", "train.early_stopping_patience=300",
            *QUICK]
    driver = subprocess.Popen([sys.executable, "-m", "pipelines.tune",
                               *tune_args(tmp_path, corpus, "basic_vae", *slow)],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    deadline = time.time() + 240
    running = []
    while time.time() < deadline and len(running) < 2:
        try:
            trials = load_study(tmp_path, "basic_vae-genre").get_trials(states=(TrialState.RUNNING,))
            running = [t for t in trials if t.user_attrs.get("mlflow_run_id")]
        except KeyError:
            running = []
        time.sleep(0.5)
    assert len(running) == 2, "both workers should be training"
    driver.send_signal(signal.SIGINT)
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130 and "stopped" in stderr
    for trial in running:  # every worker process is gone, its trial failed, its run stopped
        pid = int(trial.user_attrs["worker"].rpartition(":")[2])
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    study = load_study(tmp_path, "basic_vae-genre")
    assert not study.get_trials(states=(TrialState.RUNNING,))
    statuses = {mlflow.get_run(t.user_attrs["mlflow_run_id"]).info.status for t in running}
    assert statuses <= {"KILLED", "FAILED"}

    tune.main(tune_args(tmp_path, corpus, "basic_vae", "tune.n_trials=2", "train.epochs=1", *QUICK))
    assert len(load_study(tmp_path, "basic_vae-genre").get_trials(states=(TrialState.COMPLETE,))) >= 2


def _raylet_of(pid: int, nodes: list) -> object | None:
    """The node whose raylet started the process pid (Ray's worker processes are its children)."""
    for node in nodes:
        raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
        if pid in {child.pid for child in raylet.children(recursive=True)}:
            return node
    return None


@pytest.mark.slow
def test_a_lost_node_s_worker_is_rerun_on_another_node_and_its_trial_retried(tmp_path, corpus, mlflow_store):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]  # one worker on each
    lost: list = []
    stop = threading.Event()

    def lose_the_node_of_a_running_trial() -> None:
        while not stop.is_set() and not lost:
            try:
                running = load_study(tmp_path, "basic_vae-genre").get_trials(states=(TrialState.RUNNING,))
            except KeyError:
                running = []
            started = [t for t in running if t.user_attrs.get("mlflow_run_id")]
            node = started and _raylet_of(int(started[0].user_attrs["worker"].rpartition(":")[2]), nodes)
            if node:
                # Its raylet and worker processes are killed; the task is re-run on the other node.
                cluster.remove_node(node, allow_graceful=False)
                lost.append(started[0])
            time.sleep(0.3)

    watcher = threading.Thread(target=lose_the_node_of_a_running_trial, daemon=True)
    watcher.start()
    try:
        tune.main(tune_args(tmp_path, corpus, "basic_vae", "tune.n_trials=2", "tune.workers=2",
                            "train.epochs=3", *QUICK, f"tune.cluster={cluster.address}"))
    finally:
        stop.set()
        watcher.join()
        cluster.shutdown()
    (dead,) = lost
    study = load_study(tmp_path, "basic_vae-genre")
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) >= 2
    assert [t.number for t in study.get_trials(states=(TrialState.FAIL,))] == [dead.number]
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE and retries[0].params == dead.params
    assert mlflow.get_run(dead.user_attrs["mlflow_run_id"]).info.status == "FAILED"
