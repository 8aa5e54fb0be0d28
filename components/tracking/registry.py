"""Every MLflow Model Registry call of the platform: register runs' models, move `champion`, look up.

One registered model per architecture (the run's `model` tag). Each version carries as tags the
run's headline scores on both splits (`val/genre/nmi` selects, `test/genre/nmi` with its chance
level, p-value and interval reports; `.../language/...` alike), MFCC's test score, `run_id`,
`study`, `task` and, for a CVAE, `label_conditioned`, so a champion can be judged later without
its run. Promotion compares val scores only: test songs never decide anything. The alias
`champion` names the version to serve (`models:/<name>@champion`); `previous_champion` the one it
replaced, for rollback. Stages are deprecated in MLflow 3: not used.

Promotion reads, compares and moves aliases in separate calls, not in one transaction: run one
promotion at a time per registered model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from components.errors import RegistryError
from components.tracking.mlflow_runs import connect, tracking_uri
from components.vocabulary import HEADLINE, PROMOTION_TASKS, REPORT, SELECT, TASKS, metric

CHAMPION = "champion"
PREVIOUS_CHAMPION = "previous_champion"
# Every headline score of both labels on both splits, whichever task a version is promoted for: a
# later promotion for the other task compares against these tags.
METRIC_NAMES = (tuple(metric(split, label, score) for split in (SELECT, REPORT) for label in TASKS
                      for score in HEADLINE)
                + tuple(metric(REPORT, label, score, variant) for label in TASKS
                        for variant, score in (("mfcc", "nmi"), ("mfcc", "nmi_p_value"),
                                               ("untrained", "nmi"))))


@dataclass
class Promotion:
    """What `promote` did: the version registered (or reused) and whether it became champion."""

    name: str
    version: int
    promoted: bool
    reason: str
    previous_champion: int | None  # the champion before this call (None: there was none)
    value: float | None = None  # the candidate's task value (task_metric); None for a rollback


@dataclass
class Champion:
    """One registered model as `champions()` lists it; version None when it has no champion."""

    name: str
    version: int | None
    task: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str = ""
    study: str = ""
    label_conditioned: str = ""
    previous_champion: int | None = None


def task_labels(task: str) -> tuple[str, ...]:
    """The labels a promotion task scores: `both` is genre and language."""
    _check_task(task)
    return TASKS if task == "both" else (task,)


def task_metric(task: str, metrics: Mapping[str, float | str]) -> float | None:
    """The value a task is judged on, from a run's metrics or a version's tags (strings): always
    a validation score, never a test one.

    genre -> `val/genre/nmi`, language -> `val/language/nmi`, both -> the mean of the two (one
    number that rewards a latent space clustering both labels; the targets ask NMI > 0.3 on each).
    NMI, not ARI or silhouette: it is the headline clustering score of every run and does not
    depend on the cluster sizes. None when a needed metric is missing.
    """
    values = [metrics.get(selection_metric(label)) for label in task_labels(task)]
    if any(v is None for v in values):
        return None
    return sum(float(v) for v in values) / len(values)


def selection_metric(label: str) -> str:
    """The run metric that selects for a label: its validation NMI under the declared protocol."""
    return metric(SELECT, label, "nmi")


def _check_task(task: str) -> None:
    if task not in PROMOTION_TASKS:
        raise RegistryError(f"unknown task '{task}': choose one of {', '.join(PROMOTION_TASKS)}")


def _client() -> MlflowClient:
    # Global, not only the client's: MLflow's SQL registry store resolves a `models:/m-...` source
    # through a default MlflowClient(), and mlflow.register_model uses one too.
    uri = connect()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def _finished_run(client: MlflowClient, run_id: str) -> Run:
    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        raise RegistryError(f"no run '{run_id}' in the tracking store {tracking_uri()}: pass the id "
                            f"of a training run (mlflow ui, or the id pipelines.train prints), "
                            f"and set MLFLOW_TRACKING_URI if the run lives elsewhere") from err
    if run.info.status != "FINISHED":
        raise RegistryError(f"run {run_id} is {run.info.status}, not FINISHED: only a finished run's "
                            f"model is promoted. Resume it (python -m pipelines.train --model "
                            f"{run.data.tags.get('model', '<model>')} --resume {run_id}) or pick a "
                            f"finished run")
    if not run.data.tags.get("model"):
        raise RegistryError(f"run {run_id} has no `model` tag: it is not a training run of "
                            f"pipelines.train; promote a run made by `mlflow run . -P model=...`")
    best_epoch = run.data.metrics.get("train/best_epoch", -1)
    if best_epoch < 0:  # e.g. train.epochs=0: its logged model is the untrained initialisation
        raise RegistryError(f"run {run_id} completed no training epoch (train/best_epoch "
                            f"{run.data.metrics.get('train/best_epoch', 'missing')}): its model is "
                            f"untrained. Train with train.epochs >= 1 and promote that run")
    return run


def _model_uri(client: MlflowClient, run: Run) -> str:
    """The run's logged model: its `model_uri` tag, else (runs logged before that tag existed) the
    run's only logged model."""
    uri = run.data.tags.get("model_uri")
    if uri:
        return uri
    logged = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'")
    if len(logged) == 1:
        return logged[0].model_uri
    found = "no logged model" if not logged else f"{len(logged)} logged models and no model_uri tag"
    raise RegistryError(f"run {run.info.run_id} has {found}: nothing to register. Its training "
                        f"ended before logging the model; train it again (mlflow run . -P "
                        f"model={run.data.tags['model']} --env-manager local) and promote the new run")


def _number(value: str) -> str:
    # repr keeps every digit, so a tie in the registry is a tie in the run's metrics.
    return repr(float(value))


def _version_tags(run: Run, task: str, study: str | None) -> dict[str, str]:
    tags = {name: _number(run.data.metrics[name]) for name in METRIC_NAMES if name in run.data.metrics}
    tags |= {"run_id": run.info.run_id, "task": task}
    study = study or run.data.tags.get("optuna.study_name")
    if study:
        tags["study"] = study
    for key, tag in (("trial_number", "optuna.trial_number"), ("label_conditioned", "label_conditioned")):
        if run.data.tags.get(tag):
            tags[key] = run.data.tags[tag]
    return tags


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.create_registered_model(name, description=f"The {name} architecture; alias "
                                       f"`{CHAMPION}` is the version to serve.")
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _version_of_run(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    found = client.search_model_versions(f"name = '{name}' and tags.run_id = '{run_id}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def _aliases(client: MlflowClient, name: str) -> dict[str, int]:
    # Read from the registered model: search_model_versions may leave version aliases empty.
    return {alias: int(version) for alias, version in client.get_registered_model(name).aliases.items()}


def _judged_value(tags: Mapping[str, str], task: str) -> float | None:
    """A version's value on `task`, or None when it has none that counts: a metric missing, or the
    version conditioned on one of the task's labels (a label-conditioned score is not unsupervised)."""
    if tags.get("label_conditioned") in task_labels(task):
        return None
    return task_metric(task, tags)


def promote(run_id: str, task: str, study: str | None = None) -> Promotion:
    """Register the run's model as a version of the registered model named after its architecture
    and move `champion` to it when its task value is strictly greater than the champion's.

    The champion's value is read from its version tags on the *requested* task, also when it was
    promoted for another one (the tags hold both labels' metrics): a language promotion compares
    language NMIs even if the incumbent won on genre. An incumbent without a value that counts on
    the task (metric missing, or conditioned on one of its labels) loses to any candidate that has
    one. Ties keep the incumbent. The replaced champion gets `previous_champion`.

    A CVAE (run tag `label_conditioned`) is registered but never becomes champion for its own label
    or for `both` (whose mean includes it). Promoting a run twice reuses its version.
    """
    _check_task(task)
    client = _client()
    run = _finished_run(client, run_id)
    name = run.data.tags["model"]
    source = _model_uri(client, run)
    value = task_metric(task, run.data.metrics)
    conditioned = run.data.tags.get("label_conditioned")
    # A CVAE's own label is scored only under <label>_conditioned: it is registered, never judged.
    if value is None and conditioned not in task_labels(task):
        missing = [selection_metric(label) for label in task_labels(task)
                   if selection_metric(label) not in run.data.metrics]
        unscored = {label: run.data.tags[metric(SELECT, label, "unscored")] for label in task_labels(task)
                    if metric(SELECT, label, "unscored") in run.data.tags}
        if unscored:
            raise RegistryError(f"run {run_id} is unscored on {SELECT} songs for task {task} ("
                                f"{'; '.join(f'{k}: {v}' for k, v in unscored.items())}), so it cannot "
                                f"be judged; it is not promoted")
        raise RegistryError(f"run {run_id} has no {', '.join(missing)} metric: its evaluation did not "
                            f"run, so it cannot be judged for task {task}; train it again")

    _ensure_registered_model(client, name)
    aliases = _aliases(client, name)
    incumbent = aliases.get(CHAMPION)
    tags = _version_tags(run, task, study)
    existing = _version_of_run(client, name, run_id)
    if existing is None:
        # register_model (not create_model_version) also links the version on the logged model.
        version = int(mlflow.register_model(source, name, tags=tags).version)
        # Two tune workers finishing at once can both register the study's best run: the lowest
        # version stays, the others are deleted, so every worker ends on the same version.
        first = _version_of_run(client, name, run_id)
        if first is not None and int(first.version) < version:
            client.delete_model_version(name, str(version))
            version = int(first.version)
    else:
        version = int(existing.version)
        # A version holding an alias keeps the task it was judged on when it won.
        keep = {"task"} if version in aliases.values() else set()
        for key, tag_value in tags.items():
            if key not in keep and existing.tags.get(key) != tag_value:
                client.set_model_version_tag(name, str(version), key, tag_value)

    def result(promoted: bool, reason: str) -> Promotion:
        return Promotion(name, version, promoted, reason, incumbent, value)

    if conditioned and conditioned in task_labels(task):
        other = next(label for label in TASKS if label != conditioned)
        why = (f"its {conditioned} score" if task == conditioned
               else f"the 'both' score averages in its {conditioned} NMI, which")
        return result(False, f"{name} is conditioned on {conditioned} (run tag label_conditioned="
                             f"{conditioned}): {why} is not an unsupervised result, so it never becomes "
                             f"champion for task {task}. Registered as version {version}; promote it "
                             f"with --task {other} instead")
    label = (f"mean({selection_metric('genre')}, {selection_metric('language')})" if task == "both"
             else selection_metric(task))
    if incumbent is None:
        client.set_registered_model_alias(name, CHAMPION, str(version))
        return result(True, f"{label} {value:.4f}: first champion of {name}")
    if incumbent == version:
        return result(False, f"version {version} is already the champion")
    best = _judged_value(client.get_model_version(name, str(incumbent)).tags, task)
    if best is not None and not value > best:
        return result(False, f"{label} {value:.4f} does not beat champion version {incumbent}'s "
                             f"{best:.4f} (ties keep the incumbent): version {version} registered, "
                             f"not promoted")
    client.set_registered_model_alias(name, PREVIOUS_CHAMPION, str(incumbent))
    client.set_registered_model_alias(name, CHAMPION, str(version))
    beaten = (f"beats version {incumbent}'s {best:.4f}" if best is not None
              else f"replaces version {incumbent}, which has no {label} that counts")
    return result(True, f"{label} {value:.4f} {beaten}; version {incumbent} is now "
                        f"{PREVIOUS_CHAMPION} (rollback: python -m pipelines.promote --rollback {name})")


def rollback(name: str) -> Promotion:
    """Move `champion` back to `previous_champion` and drop that alias, so a second rollback cannot
    bring the rolled-back version back by accident."""
    client = _client()
    try:
        aliases = _aliases(client, name)
    except MlflowException as err:
        raise RegistryError(f"no registered model '{name}': see python -m pipelines.champions") from err
    previous, current = aliases.get(PREVIOUS_CHAMPION), aliases.get(CHAMPION)
    if previous is None:
        raise RegistryError(f"{name} has no {PREVIOUS_CHAMPION} alias: nothing to roll back to "
                            f"(champion is version {current})")
    client.set_registered_model_alias(name, CHAMPION, str(previous))
    client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
    return Promotion(name, previous, True, f"rolled back: champion is version {previous} again "
                     f"(was version {current})", current)


def champions() -> list[Champion]:
    """Every registered model, by name, with its champion version's tags (version None if none)."""
    client = _client()
    models, token = [], None
    while True:
        page = client.search_registered_models(order_by=["name ASC"], page_token=token)
        models.extend(page)
        token = page.token
        if not token:
            break
    listed = []
    for model in models:
        aliases = {alias: int(version) for alias, version in model.aliases.items()}
        version = aliases.get(CHAMPION)
        if version is None:
            listed.append(Champion(model.name, None, previous_champion=aliases.get(PREVIOUS_CHAMPION)))
            continue
        tags = client.get_model_version(model.name, str(version)).tags
        listed.append(Champion(
            model.name, version, task=tags.get("task", ""),
            metrics={name: float(tags[name]) for name in METRIC_NAMES if name in tags},
            run_id=tags.get("run_id", ""), study=tags.get("study", ""),
            label_conditioned=tags.get("label_conditioned", ""),
            previous_champion=aliases.get(PREVIOUS_CHAMPION)))
    return listed


def version_of(model_uri: str) -> tuple[str, int] | None:
    """(name, version) of a registry URI, models:/<name>@<alias> or models:/<name>/<version>;
    None for a logged model (models:/m-<id>) or any other URI."""
    if not model_uri.startswith("models:/") or model_uri.startswith("models:/m-"):
        return None
    path = model_uri.removeprefix("models:/")
    client = _client()
    try:
        if "@" in path:
            name, alias = path.split("@", 1)
            return name, int(client.get_model_version_by_alias(name, alias).version)
        name, _, version = path.partition("/")
        return name, int(client.get_model_version(name, version).version)
    except MlflowException as err:
        raise RegistryError(f"{model_uri}: no such registered model version ({err.message}); see "
                            f"python -m pipelines.champions for what is registered") from err


def tag_version(name: str, version: int, tags: Mapping[str, float | str]) -> None:
    """Write scores (repr of the float, as promotion does) and notes onto a model version."""
    client = _client()
    for key, value in tags.items():
        text = value if isinstance(value, str) else _number(str(value))
        client.set_model_version_tag(name, str(version), key, text)
