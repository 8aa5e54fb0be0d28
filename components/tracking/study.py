"""Optuna studies: storage, sampler, pruner, the objective's metrics, and the study's summary.

A study is named `<model>-<task>` unless told otherwise. By default it lives in the journal file
`optuna.log` in the project root: Optuna's storage for parallel workers on one host (SQLite locks
under concurrent writers). `tune.storage` also takes a journal file path of your own or an RDB URL:
PostgreSQL for workers on many machines, SQLite for one worker. Reopening a study resumes it:
`tune.n_trials` is the number of finished (complete + pruned) trials the study should hold, not
the number this invocation adds.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import zlib
from collections.abc import Callable
from typing import Any

import optuna
from matplotlib.figure import Figure
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, ProgrammingError

from components.config import PROJECT_ROOT, ConfigError
from components.processes import gone
from components.settings import Experiment
from components.tracking.library_internals import study_storage, trial_id
from components.tracking.redaction import masked, masked_text
from components.tracking.registry import selection_metric, task_labels
from components.vocabulary import PROMOTION_TASKS, PRUNERS, SAMPLERS

log = logging.getLogger(__name__)

TASKS = PROMOTION_TASKS  # a study optimises what promotion judges
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
SCHEMA_ATTEMPTS = 4  # opening an RDB storage whose tables another worker is creating right now


def default_storage() -> str:
    return str(PROJECT_ROOT / "optuna.log")


def is_journal(url: str) -> bool:
    """A plain path is a journal file; anything with a scheme is an RDB URL."""
    return "://" not in url


def objective_metrics(task: str) -> list[str]:
    """The run metrics a trial returns: validation NMI of the declared method and unit (the test
    split is never read by a study)."""
    if task not in TASKS:
        raise ConfigError(f"tune.task={task!r} is not one of {', '.join(TASKS)}")
    return [selection_metric(label) for label in task_labels(task)]


def objective_values(scores: dict[str, Any], metrics: list[str], trial: int) -> float | tuple[float, ...]:
    """What a trial returns to Optuna: its val scores of the objective's metrics."""
    missing = [m for m in metrics if not isinstance(scores.get(m), float)]
    if missing:
        raise ConfigError(f"trial {trial} has no {missing} (a task with one class in the val split); use "
                          f"a data split where both tasks have 2+ classes")
    values = tuple(float(scores[m]) for m in metrics)
    return values[0] if len(values) == 1 else values


def check_task(config: Experiment) -> None:
    """A CVAE is told its label: tuning it for that label would reward reading the input."""
    label = config.model.condition_on
    task = config.tune.task
    objective_metrics(task)  # an unknown task is reported as the tune.task key it came from
    if label and label in task_labels(task):
        other = "language" if label == "genre" else "genre"
        raise ConfigError(f"{config.model.name} is conditioned on {label}, so its {label} "
                          f"score is not unsupervised; tune it with tune.task={other}")


StaleTrialHook = Callable[[FrozenTrial], None]


def open_storage(url: str | None, heartbeat_seconds: int, max_retry: int,
                 on_stale: StaleTrialHook | None = None) -> optuna.storages.BaseStorage:
    """A journal file (the default; a path) or an RDB storage (an URL) with heartbeats.

    RDB: a RUNNING trial whose worker stopped beating for 2 heartbeats is failed and re-enqueued
    with the same parameters when the next trial of the study starts (in any worker). Journal
    files have no heartbeats in Optuna; `fail_dead_local_trials` does the same for workers on
    this host. on_stale(trial) then closes what the dead worker left open (its MLflow run)."""
    url = url or default_storage()
    if is_journal(url):
        path = os.path.abspath(os.path.expanduser(url))
        if not os.path.isdir(os.path.dirname(path)):
            raise ConfigError(f"tune.storage={url!r}: folder {os.path.dirname(path)} does not exist; "
                              f"create it or pick another journal file path")
        return JournalStorage(JournalFileBackend(path))
    if url.split(":", 1)[0].split("+")[0] not in RDB_SCHEMES:
        raise ConfigError(f"tune.storage={masked(url)!r} is not an RDB URL; use sqlite:///path.db, "
                          f"postgresql://user@host/db or a journal file path")
    def rdb() -> RDBStorage:
        return RDBStorage(
            url, heartbeat_interval=heartbeat_seconds, grace_period=2 * heartbeat_seconds,
            heartbeat_stale_trial_callback=_stale_trial_callback(max_retry, on_stale),
            engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None)

    try:
        for attempt in range(SCHEMA_ATTEMPTS - 1):
            try:
                return rdb()
            except (IntegrityError, ProgrammingError):
                # Workers started together on an empty database all create Optuna's tables; the
                # losers see "already exists" (a duplicate key in the catalog). Once the winner
                # is done the tables are there and opening again succeeds.
                time.sleep(1 + attempt)
        return rdb()
    except Exception as err:  # sqlalchemy errors carry the URL: say which one, masked
        raise ConfigError(f"cannot open the Optuna storage {masked(url)}: {masked_text(str(err), url)}; "
                          f"check tune.storage and that the database server is running") from err


def _stale_trial_callback(max_retry: int, on_stale: StaleTrialHook | None
                          ) -> Callable[[optuna.Study, FrozenTrial], None]:
    retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def stale(study: optuna.Study, trial: FrozenTrial) -> None:
        if on_stale is not None:
            on_stale(trial)
        retry(study, trial)
    return stale


def worker_id() -> str:
    """host:pid of this process, kept on each trial (user attribute `worker`)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def dead_trial_reaper(max_retry: int,
                      on_stale: StaleTrialHook) -> Callable[[optuna.Study, FrozenTrial], None]:
    """An optimize callback that, between trials, also fails and re-enqueues trials of dead workers
    on this host (journal storages have no heartbeats; on RDB storages it finds nothing)."""
    def reap(study: optuna.Study, _: FrozenTrial) -> None:
        fail_dead_local_trials(study, max_retry, on_stale)
    return reap


def fail_dead_local_trials(study: optuna.Study, max_retry: int,
                           on_stale: StaleTrialHook | None = None) -> list[int]:
    """What heartbeats do on RDB storages, for a journal file: a RUNNING trial whose worker was a
    process on this host that no longer exists is failed, on_stale(trial) runs and the trial is
    re-enqueued with the same parameters. Returns the failed trial numbers."""
    storage = study_storage(study)
    if not isinstance(storage, JournalStorage):
        return []
    host = socket.gethostname()
    callback = _stale_trial_callback(max_retry, on_stale)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if worker_host != host or not gone(pid):
            continue
        try:
            storage.set_trial_state_values(trial_id(trial), state=TrialState.FAIL)
        except UpdateFinishedTrialError:  # another worker failed it first
            continue
        log.warning("trial %d: its worker (pid %s) is gone; failed and re-enqueued", trial.number, pid)
        callback(study, storage.get_trial(trial_id(trial)))
        failed.append(trial.number)
    return failed


def make_sampler(name: str, seed: int, startup_trials: int = 10) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        # constant_liar: parallel workers do not all sample next to the same running trial.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=startup_trials)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"tune.sampler={name!r} is not one of {', '.join(SAMPLERS)}")


def make_pruner(name: str, warmup_epochs: int, max_epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup_epochs)
    if name == "hyperband":
        # Resources are epochs; a warm-up longer than the training must not push the first
        # rung past the last epoch.
        return optuna.pruners.HyperbandPruner(min_resource=min(max(1, warmup_epochs), max_epochs),
                                              max_resource=max_epochs)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"tune.pruner={name!r} is not one of {', '.join(PRUNERS)}")


def open_study(config: Experiment, on_stale: StaleTrialHook | None = None
               ) -> tuple[optuna.Study, bool]:
    """Create the study, or load it to resume or to join other workers (the sampler and pruner
    are this worker's). Returns (study, created): exactly one worker creates a study, even when
    several start at once, since the storage refuses a second study of the same name."""
    tune = config.tune
    metrics = objective_metrics(tune.task)
    storage = open_storage(tune.storage, tune.heartbeat_seconds, tune.max_retry, on_stale)
    name = study_name(config)
    try:  # not get_all_study_summaries: that computes every study's best trial
        existing = storage.get_n_trials(storage.get_study_id_from_name(name))
    except KeyError:
        existing = 0
    settings = {"storage": storage, "study_name": name, "directions": ["maximize"] * len(metrics),
                "pruner": make_pruner(tune.pruner, tune.prune_warmup_epochs, config.train.epochs)}
    # The worker that creates the study samples from the config's seed, so a study run by one
    # worker is reproducible. Every other worker (a resume, or parallel workers that all start
    # at the same count of trials) seeds from its host:pid as well: with one seed they would all
    # draw the same parameters.
    joined = config.seed + existing + zlib.crc32(worker_id().encode())
    try:
        try:
            sampler = make_sampler(tune.sampler, config.seed, tune.startup_trials)
            study, created = optuna.create_study(**settings, sampler=sampler), True
        except DuplicatedStudyError:
            sampler = make_sampler(tune.sampler, joined, tune.startup_trials)
            study, created = optuna.create_study(**settings, sampler=sampler, load_if_exists=True), False
    except ValueError as err:  # e.g. reopening a single-objective study as `both`
        raise ConfigError(f"study {name!r} exists with other objectives ({err}); "
                          f"set tune.study to a new name") from err
    if created:
        study.set_metric_names(metrics)
        study.set_user_attr("model", config.model.name)
        study.set_user_attr("task", tune.task)
    elif study.user_attrs.get("model") not in (None, config.model.name):
        raise ConfigError(f"study {name!r} tunes {study.user_attrs['model']}, not "
                          f"{config.model.name}; set tune.study to a new name")
    return study, created


def study_name(config: Experiment) -> str:
    return config.tune.study or f"{config.model.name}-{config.tune.task}"


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def stop_conditions(n_trials: int) -> list[Any]:
    """Stop at n_trials finished trials in the whole study (so reruns resume rather than add), or
    when as many trials have failed outright, which means the settings are broken."""
    def too_many_failures(study: optuna.Study, trial: FrozenTrial) -> None:
        if len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))) > max(n_trials, 3):
            log.error("more failed trials than n_trials: stopping the study; see the failed runs")
            study.stop()
    return [MaxTrialsCallback(n_trials, states=FINISHED), too_many_failures]


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial, or for `both` the Pareto front ordered by mean NMI (best first)."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    if len(study.directions) == 1:
        return [study.best_trial]
    return sorted(study.best_trials, key=lambda t: -sum(t.values) / len(t.values))


def summary(study: optuna.Study) -> tuple[dict[str, float], dict[str, str]]:
    """Metrics and tags for the study's MLflow run: trial counts, the best trial's values,
    parameters and run id (mutable tags, since the best trial changes as the study resumes)."""
    counts = {f"trials/{state.name.lower()}": float(len(study.get_trials(deepcopy=False, states=(state,))))
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    best = best_trials(study)
    if not best:
        return counts, {}
    names = study.metric_names or [f"value_{i}" for i in range(len(study.directions))]
    top = best[0]
    metrics = counts | {f"best/{name.replace('/', '_')}": v for name, v in zip(names, top.values)}
    tags = {"best_trial.number": str(top.number),
            "best_trial.run_id": str(top.user_attrs.get("mlflow_run_id", ""))}
    tags |= {f"best_trial.{key}": str(value) for key, value in top.params.items()}
    if len(best) > 1:
        tags["pareto_front.trials"] = ",".join(str(t.number) for t in best)
    return metrics, tags


def figures(study: optuna.Study) -> dict[str, Figure]:
    """Optuna's history / importance / parallel-coordinate (and Pareto front or intermediate
    values) plots. A plot that needs more trials than the study has is skipped, not an error."""
    from optuna.visualization import matplotlib as plots

    names = study.metric_names
    single = len(study.directions) == 1
    wanted = {"optimization_history": plots.plot_optimization_history,
              "param_importances": plots.plot_param_importances,
              "parallel_coordinate": plots.plot_parallel_coordinate}
    if single:
        wanted["intermediate_values"] = plots.plot_intermediate_values
    else:
        wanted["pareto_front"] = plots.plot_pareto_front
    result = {}
    for name, plot in wanted.items():
        kwargs: dict[str, Any] = {}
        if not single and name != "pareto_front":
            kwargs = {"target": lambda t: t.values[0], "target_name": names[0] if names else "value_0"}
        try:
            axes = plot(study, **kwargs)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:  # too few trials for this plot
            log.info("skipping the %s plot: %s", name, err)
            continue
        axes = axes.flat[0] if hasattr(axes, "flat") else axes
        result[f"optuna/{name}.png"] = axes.figure
    return result


def pruning_reporter(trial: optuna.Trial, metric: str | None):
    """Report val/<task>_nmi after every epoch; raise TrialPruned when the pruner says so.
    Multi-objective studies cannot prune (Optuna refuses report()), so they report nothing."""
    def report(metrics: dict[str, float], epoch: int) -> None:
        if metric is None or metric not in metrics:
            return
        trial.report(metrics[metric], epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: {metric}={metrics[metric]:.4f}")
    return report


def study_run_id(study: optuna.Study, own_run_id: str, wait_seconds: float = 60) -> str:
    """The study's MLflow run id. A worker that joins a study created a moment ago waits for the
    creating worker to record it (it starts its run right after creating the study); if that
    worker died first, this run becomes the study's run."""
    deadline = time.monotonic() + wait_seconds
    while (parent := study.user_attrs.get("mlflow_parent_run_id")) is None:
        if time.monotonic() > deadline:
            print(f"study {study.study_name}: no MLflow run recorded by its creator; this run "
                  f"({own_run_id}) becomes the study's run")
            study.set_user_attr("mlflow_parent_run_id", own_run_id)
            return own_run_id
        time.sleep(0.5)
    return parent
