"""Every MLflow call of the platform, so API churn touches one file.

Default store: SQLite `mlflow.db` in the project root. Under `mlflow run` the project run is
continued (MLFLOW_RUN_ID); `--resume RUN_ID` re-opens a run to continue its training.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
import yaml
from mlflow.data.meta_dataset import MetaDataset
from mlflow.data.sources import LocalArtifactDatasetSource
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec
from mlflow.utils.time import get_current_time_millis

from components.config import PROJECT_ROOT, config_hash, flatten, parse_value, set_dotted
from components.data.feature_cache import FeatureCache
from components.error_summary import first_line
from components.errors import TrackingError
from components.evaluation.comparison import RunSummary
from components.processes import alive, identity
from components.settings import Experiment, TrackingSettings
from components.tracking.embedding_model import ARTIFACT as EMBEDDING_ARTIFACT
from components.tracking.embedding_model import CODE_FILE as EMBEDDING_CODE_FILE
from components.tracking.embedding_model import EmbeddingModel
from components.tracking.library_internals import forget_active_runs
from components.tracking.redaction import masked, masked_value, password_of

log = logging.getLogger(__name__)


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


_connected: set[str] = set()


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def connect() -> str:
    """Check the tracking store answers before anything is written locally; returns its URI.

    A server: one request without MLflow's retries (7, with back-off, would hold a wrong URI for
    minutes), failing with a TrackingError that names it. A SQLite store: MLflow creates and
    migrates the schema on first use without a lock, and parallel workers on a fresh store
    corrupt it ("table _alembic_tmp_experiments already exists"): first use happens under a file lock.
    """
    uri = tracking_uri()
    if uri in _connected:
        return uri
    if uri.startswith(("http://", "https://")):
        try:
            with _environment(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
                mlflow.MlflowClient(uri).search_experiments(max_results=1)
        except Exception as err:  # connection refused, DNS, TLS, auth: all mean "not usable"
            raise TrackingError(
                f"cannot reach the MLflow tracking server {masked(uri)} ({first_line(err)}); start it "
                f"(docs/tuning.md: Tuning in parallel and on many machines) or unset MLFLOW_TRACKING_URI "
                f"to log to mlflow.db") from err
    elif uri.startswith("sqlite:///"):
        with open(uri[len("sqlite:///"):] + ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            mlflow.MlflowClient(uri).search_experiments(max_results=1)  # creating the client migrates
    _connected.add(uri)
    return uri


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def warn_if_gpu_metrics_missing() -> None:
    """MLflow only logs at debug level when NVML is missing (mlflow#7983): say it out loud."""
    if not torch.cuda.is_available():
        return
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as err:  # any NVML failure means no GPU system metrics
        log.warning("CUDA is present but NVML is not usable (%s): MLflow will log no GPU system "
                    "metrics. Install nvidia-ml-py (pinned in requirements.txt).", err)


@contextlib.contextmanager
def run(settings: TrackingSettings, resume_run_id: str | None = None, run_name: str | None = None,
        nested: bool = False, parent_run_id: str | None = None, tags: dict[str, str] | None = None,
        stopped_by: tuple[type[BaseException], ...] = ()) -> Iterator[mlflow.ActiveRun]:
    """Open (or continue) a run; mark it FAILED with the error as a tag if the body raises.

    nested / parent_run_id: a child run (a tuning trial) under the active or the given run.
    stopped_by: exceptions that end the run KILLED with a `stopped` tag instead of FAILED with
    an `error` tag (a pruned trial was stopped on purpose; it did not fail).
    """
    mlflow.set_tracking_uri(connect())
    if not os.environ.get("MLFLOW_EXPERIMENT_ID") and not resume_run_id and not nested:
        mlflow.set_experiment(settings.experiment)
    warn_if_gpu_metrics_missing()
    if resume_run_id:
        try:
            mlflow.MlflowClient().get_run(resume_run_id)
        except MlflowException as err:
            raise TrackingError(f"no run '{resume_run_id}' to resume in the tracking store "
                                f"{masked(tracking_uri())} ({first_line(err)}): pass the id pipelines.train "
                                f"printed (or from the MLflow UI), and set MLFLOW_TRACKING_URI if the run "
                                f"lives elsewhere") from err
    active = mlflow.start_run(run_id=resume_run_id, run_name=run_name, nested=nested,
                              parent_run_id=parent_run_id, tags=tags,
                              log_system_metrics=settings.system_metrics)
    run_id = active.info.run_id
    try:
        yield active
    except BaseException as err:
        stopped = isinstance(err, stopped_by)
        # KeyboardInterrupt/SIGTERM leave the run KILLED, errors FAILED; both resume later.
        status = "KILLED" if stopped or isinstance(err, KeyboardInterrupt) else "FAILED"
        try:
            mlflow.set_tag("stopped" if stopped else "error", f"{type(err).__name__}: {err}"[:5000])
            _flush()
            mlflow.end_run(status=status)
        except Exception as lost:  # the store itself is gone: say so instead of a second traceback
            forget_active_runs()
            raise TrackingError(
                f"the MLflow tracking store {masked(tracking_uri())} stopped answering during run "
                f"{run_id} ({first_line(lost)}); the run stays RUNNING there and its checkpoint is "
                f"kept: once the store is back, resume with --resume {run_id} (a tune worker: rerun the same "
                f"command, the study resumes)") from err
        raise
    _flush()
    mlflow.end_run()


PROCESS_TAG = "process"  # '<host> <pid> <start time>' of the entry point that runs the run


def process_tag() -> dict[str, str]:
    """The tag that lets a later run tell whether this run's process is still alive."""
    pid, started = identity(os.getpid())
    return {PROCESS_TAG: f"{socket.gethostname()} {pid} {started}"}


def end_runs_of_dead_processes(entry_point: str) -> list[str]:
    """End KILLED (tag `stopped`) the RUNNING runs of this experiment that the given entry point
    (tag `entry_point`) started on this host in a process that is gone: a SIGKILL or power loss
    leaves a run RUNNING for ever otherwise. Returns their ids."""
    client = mlflow.MlflowClient()
    experiment = mlflow.get_run(active_run_id()).info.experiment_id
    runs = client.search_runs([experiment], f"attributes.status = 'RUNNING' and tags.entry_point = "
                                            f"'{entry_point}'")
    ended = []
    for found in runs:
        host, pid, started = (found.data.tags.get(PROCESS_TAG, "") + "  ").split(" ")[:3]
        if found.info.run_id == active_run_id() or host != socket.gethostname() or not pid.isdigit():
            continue
        if not alive((int(pid), float(started))):
            client.set_tag(found.info.run_id, "stopped", f"its process {pid} on {host} ended without "
                                                         f"closing the run (killed)")
            client.set_terminated(found.info.run_id, "KILLED")
            ended.append(found.info.run_id)
    return ended


def _flush() -> None:
    global _pending
    _pending = None
    mlflow.flush_async_logging()


def params_containing(secret: str) -> list[str]:
    """Names of the active run's params whose value contains `secret` (`mlflow run` logs -P
    values as given, before any of our code can mask them)."""
    params = mlflow.get_run(active_run_id()).data.params
    return sorted(key for key, value in params.items() if secret in value)


def _same_value(logged: str, value: Any) -> bool:
    try:
        return parse_value(logged) == value or logged == str(value)
    except yaml.YAMLError:
        return logged == str(value)


def log_config(config: Experiment, files: list[Path]) -> None:
    """Every resolved value as a param (dotted key), the config files and the resolved YAML.

    `mlflow run` logs its -P params first; a key it logged with the same value (e.g. '1e-3' vs
    0.001) is not logged again, since MLflow refuses to change a param.
    """
    existing = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    shown = config.to_dict()  # a fresh copy: masked in place below
    masked_values = {key: masked_value(value) for key, value in flatten(shown).items()}
    params = {key: value for key, value in masked_values.items()
              if not (key in existing and _same_value(existing[key], value))}
    if params:
        mlflow.log_params(params, synchronous=True)
    mlflow.set_tags({"config_hash": config_hash(config), "model": config.model.name})
    for path in files:
        mlflow.log_artifact(str(path), artifact_path="config")
    for key, value in masked_values.items():
        set_dotted(shown, key, value)
    mlflow.log_text(yaml.safe_dump(shown, sort_keys=False), "config/resolved.yaml")


def log_environment(device: torch.device, precision_label: str, precision_reason: str,
                    choices: dict[str, str] | None = None) -> None:
    """Tags of what the run ran on and what the auto settings chose there (choices)."""
    tags = {"device": str(device), "precision": precision_label, "precision_reason": precision_reason,
            "torch": torch.__version__, **(choices or {})}
    if device.type == "cuda":
        tags["gpu"] = torch.cuda.get_device_name(device)
    commit = _git_commit()
    if commit and "mlflow.source.git.commit" not in mlflow.active_run().data.tags:
        tags["mlflow.source.git.commit"] = commit
    mlflow.set_tags(tags)


def cache_dataset(cache: FeatureCache) -> MetaDataset:
    """The feature cache as an MLflow dataset, with our own digest of all its inputs."""
    return MetaDataset(source=LocalArtifactDatasetSource(str(cache.path)),
                       name=f"features-{cache.digest[:8]}", digest=cache.dataset_digest)


def log_dataset(cache: FeatureCache, context: str = "training") -> None:
    """The feature cache as the run's dataset input, its manifest, skipped songs and the song list
    of each split (what training could read)."""
    dataset = cache_dataset(cache)
    _retried_on_duplicate_key(lambda: mlflow.log_input(dataset, context=context))
    mlflow.log_artifact(str(cache.path / "manifest.json"), artifact_path="data")
    mlflow.log_artifact(str(cache.path / "skipped.csv"), artifact_path="data")
    songs = cache.rows.groupby("song_id", sort=True)[["language", "genre", "split"]].first()
    windows = cache.rows.groupby("song_id").size()
    log_table(songs.assign(windows=windows).reset_index(), "data/songs_by_split.csv")
    counts = songs.split.value_counts()
    mlflow.log_params({"data.cache_digest": cache.digest, "data.split_key": cache.split_key,
                       "data.windows": cache.manifest["windows"],
                       "data.songs": cache.manifest["songs"],
                       **{f"data.{split}_songs": int(counts.get(split, 0))
                          for split in ("train", "val", "test")}})


def _retried_on_duplicate_key(write: Callable[[], Any], attempts: int = 3) -> None:
    """Parallel workers write the same rows at once (the study run's tags, the dataset of a
    shared cache); the store checks then inserts, so the slower writer gets a duplicate key.
    Written again, the row exists and the write succeeds."""
    for attempt in range(attempts):
        try:
            write()
            return
        except MlflowException as err:
            duplicate = any(text in str(err) for text in ("UNIQUE constraint", "duplicate key"))
            if attempt == attempts - 1 or not duplicate:
                raise
            time.sleep(0.5 * (attempt + 1))


_pending: Any = None  # the RunOperations of the last asynchronous log_metrics


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    """Numeric metrics, asynchronously; strings become tags. Each call first waits for the
    previous call's batch, so logging overlaps at most one epoch of training and a store that
    stopped answering fails the run one epoch later instead of losing every metric silently."""
    global _pending
    numeric = {k: float(v) for k, v in metrics.items() if not isinstance(v, str)}
    text = {k: v for k, v in metrics.items() if isinstance(v, str)}
    if _pending is not None:
        previous, _pending = _pending, None
        previous.wait()
    if numeric:
        _pending = mlflow.log_metrics(numeric, step=step, synchronous=False)
    if text:
        mlflow.set_tags(text)


def log_missing_epochs(history: list[dict[str, float]]) -> set[int]:
    """After a resume: re-log epochs the checkpoint saw but MLflow never received (a kill between
    the checkpoint write and the async flush), so each epoch appears exactly once. Returns the
    epochs MLflow now holds: those after the checkpoint's were logged by the killed process and
    are trained again, but not logged again."""
    client = mlflow.MlflowClient()
    logged = {m.step for m in client.get_metric_history(active_run_id(), "train/loss")}
    for entry in history:
        epoch = int(entry["epoch"])
        if epoch not in logged:
            metrics = {k: v for k, v in entry.items() if k != "epoch"}
            mlflow.log_metrics(metrics, step=epoch, synchronous=True)
    return logged | {int(entry["epoch"]) for entry in history}


def active_run_tag(name: str) -> str | None:
    return mlflow.get_run(active_run_id()).data.tags.get(name)


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


def log_params(params: dict[str, Any]) -> None:
    mlflow.log_params(params)


def log_peak_memory(device: torch.device, step: int | None = None) -> None:
    """This process's peak resident memory so far and, on CUDA, the peaks of torch's allocator:
    what MLflow's system metrics (machine-wide RAM, NVML) cannot attribute to the run."""
    metrics = {"memory/process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        metrics |= {"gpu/mem_allocated_peak_mb": torch.cuda.max_memory_allocated(device) / 2**20,
                    "gpu/mem_reserved_peak_mb": torch.cuda.max_memory_reserved(device) / 2**20}
    mlflow.log_metrics(metrics, step=step, synchronous=False)


def log_figures(figures: dict[str, Any]) -> None:
    """Each figure as an artifact at its path."""
    for path, figure in figures.items():
        mlflow.log_figure(figure, path)


def log_table(frame: Any, path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / Path(path).name
        frame.to_csv(target, index=False)
        mlflow.log_artifact(str(target), artifact_path=str(Path(path).parent))


def log_model(model: EmbeddingModel, input_example: dict[str, np.ndarray]) -> str:
    """Log the served model as a pyfunc and tag the run with its models:/ URI (what promotion
    registers, from a FINISHED run only); returns the URI.

    "Models from code": MLflow stores components/tracking/served_model.py and the weights file, not a
    pickle (MLflow warns about pickled models and can refuse them, MLFLOW_ALLOW_PICKLE_DESERIALIZATION).
    The signature names only the tensors this architecture uses: MLflow makes every TensorSpec
    required and drops inputs the signature does not name. code_paths carries components/ so the
    model loads outside the repo. MLflow runs the input example through the loaded model while
    logging, so a model that cannot serve it is noticed here.
    """
    def schema(spec: dict[str, tuple[np.dtype, tuple[int, ...]]]) -> Schema:
        return Schema([TensorSpec(dtype, shape, name) for name, (dtype, shape) in spec.items()])

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / f"{EMBEDDING_ARTIFACT}.pt"
        model.save(state)
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(EMBEDDING_CODE_FILE), artifacts={EMBEDDING_ARTIFACT: str(state)},
            signature=ModelSignature(inputs=schema(model.input_spec()), outputs=schema(model.output_spec())),
            input_example=input_example, metadata=model.metadata(),
            code_paths=[str(PROJECT_ROOT / "components")],
            pip_requirements=str(PROJECT_ROOT / "requirements.txt"),
        )
    mlflow.set_tag("model_uri", info.model_uri)
    return info.model_uri


def latest_training_runs(experiment: str | None = None) -> list[RunSummary]:
    """The newest FINISHED training run of each architecture (runs tagged `model`) in the
    experiment: the one `mlflow run` set, else `experiment` by name."""
    mlflow.set_tracking_uri(tracking_uri())
    experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    if not experiment_id:
        found = mlflow.get_experiment_by_name(experiment or "")
        if found is None:
            return []
        experiment_id = found.experiment_id
    client = mlflow.MlflowClient()
    runs = client.search_runs([experiment_id], "attributes.status = 'FINISHED' and tags.model != ''",
                              order_by=["attributes.start_time DESC"], max_results=5000)
    newest: dict[str, Any] = {}
    for run in runs:
        if "cv.folds" not in run.data.tags:  # a cross-validation's parent holds no model of its own
            newest.setdefault(run.data.tags["model"], run)
    summaries = []
    for model, run in newest.items():
        memory = run.data.metrics.get("gpu/mem_allocated_peak_mb",
                                      run.data.metrics.get("memory/process_peak_rss_mb"))
        if memory is None:  # runs logged before the process peak was
            history = client.get_metric_history(run.info.run_id, "system/system_memory_usage_megabytes")
            memory = max((m.value for m in history), default=None)
        summaries.append(RunSummary(
            model=model, run_id=run.info.run_id, metrics=run.data.metrics, tags=run.data.tags,
            params=run.data.params, minutes=((run.info.end_time or 0) - run.info.start_time) / 60000,
            peak_memory_mb=memory, start_time=run.info.start_time))
    return summaries


def load_served_model(model_uri: str) -> tuple[EmbeddingModel, str, str | None]:
    """A logged or registered model as this platform's EmbeddingModel, the id of the run that
    trained it and its logged-model id."""
    uri = connect()
    mlflow.set_tracking_uri(uri)
    try:
        loaded = mlflow.pyfunc.load_model(model_uri)
    except MlflowException as err:
        raise TrackingError(f"cannot load {model_uri} from {masked(uri)} ({first_line(err)}); see "
                            f"python -m pipelines.champions or the MLflow UI for model URIs") from err
    served = loaded.unwrap_python_model()
    if not isinstance(served, EmbeddingModel) or not loaded.metadata.run_id:
        raise TrackingError(f"{model_uri} is not a model logged by pipelines.train")
    return served, loaded.metadata.run_id, loaded.metadata.model_id


def training_run(run_id: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The resolved config a training run logged (config/resolved.yaml) and its params."""
    uri = connect()
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config/resolved.yaml",
                                               tracking_uri=uri)
    config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return config, mlflow.MlflowClient(uri).get_run(run_id).data.params


def log_evaluation(scores: dict[str, float | str], model_id: str | None, cache: FeatureCache) -> None:
    """An evaluation run's scores, linked to the logged model it scored and the dataset it read
    (they show on the model's page in the MLflow UI), the model as the run's input."""
    from mlflow.entities import LoggedModelInput

    if model_id:
        mlflow.log_input(model=LoggedModelInput(model_id))
    numeric = {k: float(v) for k, v in scores.items() if not isinstance(v, str)}
    mlflow.log_metrics(numeric, model_id=model_id, dataset=cache_dataset(cache), synchronous=True)
    mlflow.set_tags({k: v for k, v in scores.items() if isinstance(v, str)})


def child_runs(parent_run_id: str, tag: str) -> dict[str, Any]:
    """The newest child run of parent_run_id per value of `tag` (e.g. cv.fold -> its run)."""
    client = mlflow.MlflowClient(tracking_uri())
    experiment = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent_run_id}'",
                              order_by=["attributes.start_time DESC"], max_results=1000)
    found: dict[str, Any] = {}
    for run in runs:
        if tag in run.data.tags:
            found.setdefault(run.data.tags[tag], run)
    return found


def log_text(text: str, path: str) -> None:
    mlflow.log_text(text, path)


def active_run_id() -> str:
    return mlflow.active_run().info.run_id


def log_summary(run_id: str, metrics: dict[str, float], tags: dict[str, str],
                figures: dict[str, Any], step: int) -> None:
    """Metrics, tags and figures on a run that may not be the active one (a tuning study's run,
    updated by every worker that joins the study). The step is the number of finished trials."""
    client = mlflow.MlflowClient(tracking_uri())
    now = get_current_time_millis()
    batch = {"metrics": [Metric(key, value, now, step) for key, value in metrics.items()],
             "tags": [RunTag(key, value) for key, value in tags.items()]}
    _retried_on_duplicate_key(lambda: client.log_batch(run_id, **batch))
    for path, figure in figures.items():
        client.log_figure(run_id, figure, path)


def run_url(run_id: str) -> str:
    """Where the run shows in the MLflow UI: the tracking server itself, else `mlflow ui`'s
    default address."""
    uri = tracking_uri()
    base = uri.rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000"
    experiment = mlflow.MlflowClient(uri).get_run(run_id).info.experiment_id
    return f"{base}/#/experiments/{experiment}/runs/{run_id}"


def end_run_of_dead_worker(run_id: str | None, what: str) -> None:
    """A run whose process was killed stays RUNNING forever: mark it FAILED with the reason."""
    if not run_id:
        return
    client = mlflow.MlflowClient(tracking_uri())
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_tag(run_id, "error", f"{what}: its worker stopped sending heartbeats (killed or "
                                        f"lost); Optuna failed the trial and re-enqueued it")
        client.set_terminated(run_id, status="FAILED")


def warn_if_password_logged(storage: str | None) -> None:
    """Our params, tags and messages mask the storage password, but `mlflow run -P storage=...`
    has logged it already: say where, and how to keep it out."""
    password = password_of(storage)
    leaked = params_containing(password) if password else []
    if leaked:
        print(f"warning: `mlflow run` logged the database password in param(s) {', '.join(leaked)} of run "
              f"{active_run_id()}; MLflow params cannot be changed: delete the run and change "
              f"the password. Give it through PGPASSWORD or ~/.pgpass, not in the URL", file=sys.stderr)
