"""Workers of one Optuna study as Ray tasks: N at once, each a fresh process holding its GPU share
(Ray sets its CUDA_VISIBLE_DEVICES) or CPU share, placed by Ray on this machine or a cluster.

Each task runs `python -m pipelines.tune`'s own code with tune.workers=1: it joins the study,
nests its MLflow run under the study's run and runs trials until the study holds tune.n_trials
finished ones. Faults are split as the libraries split them: Ray re-runs a task whose process or
node died (max_retries); the study fails the trial that process was running and enqueues its
parameters once more (RDB storages: heartbeats; a journal file: the dead worker's pid, one host),
and the trial's MLflow run is ended FAILED. Ctrl-C on the driver cancels every task, which stops
as Ctrl-C stops a worker (its run KILLED, its trial FAIL): run the command again to resume.
"""

from __future__ import annotations

import os
import socket

import psutil

from components.config import PROJECT_ROOT
from components.errors import ConfigError
from components.settings import TuneSettings

# What a worker needs of the driver's environment (a cluster's worker nodes do not inherit it).
# Passwords are not passed: each node reads its own ~/.pgpass or PGPASSFILE.
PASSED_ENVIRONMENT = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "PGPASSFILE", "PGSERVICEFILE",
                      "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_INSECURE_TLS")
LOCAL_OBJECT_STORE = 256 * 2**20  # workers pass run ids through it, nothing large


def _is_local(cluster: str | None) -> bool:
    """Whether every worker runs on this host: its own Ray instance, `ray start` here, or a head
    at one of this host's addresses (Ray's single-host test clusters)."""
    if cluster is None or cluster == "auto":
        return True
    host = cluster.removeprefix("ray://").rpartition(":")[0] or cluster
    try:
        address = socket.gethostbyname(host)
    except OSError:
        return False
    own = {a.address for addresses in psutil.net_if_addrs().values() for a in addresses}
    return address in own or address.startswith("127.")


def check_cluster_storage(tune: TuneSettings, tracking_uri: str) -> None:
    """A study spread over hosts needs a database all of them reach: journal files and SQLite
    serve one host, and so does a file tracking store."""
    if _is_local(tune.cluster):
        return
    if not (tune.storage or "").startswith("postgresql"):
        raise ConfigError(f"tune.cluster={tune.cluster}: workers on other hosts need a shared study storage; "
                          f"set tune.storage=postgresql://user@host/db (a journal file serves one host)")
    if not tracking_uri.startswith(("http://", "https://")):
        raise ConfigError(f"tune.cluster={tune.cluster}: workers on other hosts need a tracking server; set "
                          f"MLFLOW_TRACKING_URI=http://<host>:5000 (`mlflow server`), not {tracking_uri}")


def _study_worker(argv: list[str]) -> str:
    """One worker, in its Ray process: the tune command line's code with tune.workers=1."""
    from pipelines.tune import main

    # Under `mlflow run` the driver's run is the study's run; a local Ray instance's processes
    # inherit its id, and the worker must open a run of its own under it, not continue that one.
    os.environ.pop("MLFLOW_RUN_ID", None)
    return main(argv)


def run_workers(argv: list[str], tune: TuneSettings) -> list[str]:
    """tune.workers Ray tasks running `pipelines.tune` argv (the driver's own arguments, with
    tune.workers=1 appended); returns the MLflow run ids of the workers that finished."""
    import ray

    local = tune.cluster is None
    # Workers import this project from the same path on every node (a shared filesystem or the
    # same image), so its relative paths (cache, checkpoints, the journal file) are the driver's.
    environment = {k: os.environ[k] for k in PASSED_ENVIRONMENT if k in os.environ}
    paths = [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]
    environment["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    ray.init(address="local" if local else tune.cluster, include_dashboard=not local,
             object_store_memory=LOCAL_OBJECT_STORE if local else None, log_to_driver=True,
             runtime_env={"env_vars": environment})
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) // tune.workers) if local else 1
        # max_calls=1: a fresh process per task, so no MLflow run or CUDA state outlives its worker.
        task = ray.remote(max_calls=1)(_study_worker).options(num_cpus=cpus, num_gpus=tune.gpus_per_trial,
                                                              max_retries=tune.max_retry)
        refs = [task.remote(argv) for _ in range(tune.workers)]
        try:
            return ray.get(refs)
        except KeyboardInterrupt:
            for ref in refs:  # KeyboardInterrupt inside each task: it stops as Ctrl-C stops a worker
                ray.cancel(ref)
            ray.wait(refs, num_returns=len(refs), timeout=60)
            raise
        except ray.exceptions.RayTaskError as err:
            raise err.as_instanceof_cause() from None  # the worker's own error (a ConfigError: one line)
    finally:
        ray.shutdown()


def worker_argv(argv: list[str]) -> list[str]:
    """The driver's arguments for a worker: one worker per task, and no promotion (the driver
    promotes once, after every worker is done)."""
    return [*argv, "--tune.workers", "1", "--tune.cluster", "null", "--tune.promote", "false"]

