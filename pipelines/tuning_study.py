"""One Optuna study of one architecture, every trial a nested MLflow run (the command line is
pipelines.tune).

The run of the invocation that created the study is the study's run (tag optuna.study_name);
trials nest under the run of the invocation that ran them, and every other invocation (a resume,
a parallel worker here or on another machine) nests its own run under the study's run. Each
trial's run id is the trial's user attribute `mlflow_run_id`, its worker's host:pid `worker`;
each run carries the study name and trial number as tags.
"""

from __future__ import annotations

import os
import shutil
import warnings

import optuna
from optuna_dashboard import save_note

from components.config import load_config
from components.data.preparation import prepare_features
from components.settings import Experiment
from components.tracking import cluster_workers, registry
from components.tracking import mlflow_runs as tracking
from components.tracking import study as studies
from components.tracking.redaction import masked
from components.tracking.search_space import load_search_space, suggest_values
from components.training.resume import checkpoint_dir
from components.training.trainer import NonFiniteLoss
from pipelines.training_run import train


def make_objective(model: str, base: list[str], config: Experiment, study: optuna.Study):
    space = load_search_space(model)
    metrics = studies.objective_metrics(config.tune.task)
    pruned_on = f"val/{config.tune.task}_nmi" if len(metrics) == 1 else None

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        trial.set_user_attr("worker", studies.worker_id())  # first: a dead worker's trial is found by it
        trial_config = load_config(model, base, suggest_values(trial, space))
        tags = {"optuna.study_name": study.study_name, "optuna.trial_number": str(trial.number),
                "tune.task": config.tune.task}
        with tracking.run(trial_config.tracking, run_name=f"trial_{trial.number}", nested=True, tags=tags,
                          stopped_by=(optuna.TrialPruned,)):
            run_id = tracking.active_run_id()
            trial.set_user_attr("mlflow_run_id", run_id)
            save_note(trial, f"MLflow run [{run_id}]({tracking.run_url(run_id)})")
            try:
                result = train(trial_config, on_epoch=studies.pruning_reporter(trial, pruned_on))
            finally:
                if not config.tune.keep_checkpoints:  # the model is logged; only resume needs them
                    shutil.rmtree(checkpoint_dir(trial_config, run_id), ignore_errors=True)
        return studies.objective_values(result.scores, metrics, trial.number)
    return objective


def tune(model: str, base: list[str], config: Experiment, argv: list[str]) -> str:
    """Run (or resume, or join as a worker) the study of config.tune; base: the command line's
    overrides, under which each trial's values are set; argv: the command line, which
    tune.workers > 1 runs again in each Ray task. Returns the MLflow run id of this process."""
    studies.check_task(config)
    cluster_workers.check_cluster_storage(config.tune, tracking.tracking_uri())
    load_search_space(model)  # a broken search space fails before any run starts
    # Heartbeats, metric names and the matplotlib plots are "experimental" in Optuna 5; we rely
    # on them knowingly, so their warnings are noise in every trial's log.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    def close_dead_run(trial: optuna.trial.FrozenTrial) -> None:
        tracking.end_run_of_dead_worker(trial.user_attrs.get("mlflow_run_id"), f"trial {trial.number}")

    tracking.connect()  # an unreachable tracking server fails here, before the study is touched
    study, created = studies.open_study(config, on_stale=close_dead_run)
    tune = config.tune
    studies.fail_dead_local_trials(study, tune.max_retry, close_dead_run)
    tags = {"optuna.study_name": study.study_name, "tune.task": tune.task, "tune.worker": studies.worker_id(),
            "optuna.storage": masked(tune.storage or studies.default_storage()),
            "tune.cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "all")}  # a Ray task's own
    with tracking.run(config.tracking, run_name=f"tune-{study.study_name}", tags=tags):
        run_id = tracking.active_run_id()
        if created:
            study.set_user_attr("mlflow_parent_run_id", run_id)
        parent = studies.study_run_id(study, run_id)
        if parent != run_id:  # a resume or another worker: show it under the study's run
            tracking.set_tags({"mlflow.parentRunId": parent, "tune.role": "worker"})
        tracking.log_config(config, [])
        tracking.warn_if_password_logged(tune.storage)
        prepare_features(config)  # bad data fails here, once, and trials find the cache warm
        done = studies.finished_count(study)
        print(f"study {study.study_name}: {done} of {tune.n_trials} trials finished"
              + (", resuming" if done else ""))
        if done < tune.n_trials and (tune.workers > 1 or tune.cluster):
            workers = cluster_workers.run_workers(cluster_workers.worker_argv(argv), tune)
            print(f"study {study.study_name}: {len(workers)} workers finished (runs {', '.join(workers)})")
        elif done < tune.n_trials:
            reap = studies.dead_trial_reaper(tune.max_retry, close_dead_run)
            study.optimize(make_objective(model, base, config, study), timeout=tune.timeout,
                           callbacks=[*studies.stop_conditions(tune.n_trials), reap],
                           catch=(NonFiniteLoss,), gc_after_trial=True)
        metrics, summary_tags = studies.summary(study)
        tracking.log_summary(parent, metrics, summary_tags, studies.figures(study),
                             step=studies.finished_count(study))
        print(f"study {study.study_name}: " + ", ".join(f"{k}={v:g}" for k, v in metrics.items()))
        best = studies.best_trials(study)
        if tune.promote and best:
            # For `both`, the Pareto-front trial with the best mean NMI (registry.task_metric).
            promotion = registry.promote(best[0].user_attrs["mlflow_run_id"], tune.task, study.study_name)
            line = f"{promotion.name} version {promotion.version}: {promotion.reason}"
            tracking.log_summary(parent, {}, {"promotion": line}, {}, step=0)
            print(f"promotion: {line}")
    return run_id
