"""One training run: prepare the features, train, evaluate and log it all to the active MLflow
run (the command line is pipelines.train; tuning trials and cross-validation folds call train())."""

from __future__ import annotations

from dataclasses import dataclass

from components.config import DEFAULTS_FILE, experiment_file
from components.data.dataset import TASKS, WindowDataset, check_split_sizes, loader_for
from components.data.lyrics import embed_lyrics
from components.data.preparation import prepare_features
from components.evaluation.scoring import Protocol, epoch_scorer, evaluate, headline_lines
from components.models import MODELS, adapt_to_data, build_model, count_parameters
from components.models.base import FitSetup
from components.settings import Experiment
from components.tracking import mlflow_runs as tracking
from components.tracking.embedding_model import build_embedding_model
from components.training import checkpoint
from components.training.checkpoint import TrainState
from components.training.resume import checkpoint_dir, config_for_resume
from components.training.seeding import seed_everything
from components.training.trainer import MetricsCallback, Trainer


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    scores: dict[str, float | str]  # '<split>/<task>/<metric>' (components.evaluation.scoring), as logged
    model_uri: str
    state: TrainState


def train(config: Experiment, on_epoch: MetricsCallback | None = None) -> TrainResult:
    """Prepare, train, evaluate and log the model inside the active MLflow run.

    on_epoch(metrics, epoch) runs after each epoch's metrics are logged (the tuner reports
    val/<task>_nmi to Optuna there and may raise optuna.TrialPruned to stop the run).
    """
    name = config.model.name
    run_id = tracking.active_run_id()
    cache = prepare_features(config)
    # Embedded once per (cache, lyrics settings), for the architectures that read lyrics.
    lyrics = embed_lyrics(cache, config.lyrics, config.seed) if MODELS[name].uses_lyrics else None
    config = adapt_to_data(config, cache.vocab, lyrics[1] if lyrics else None)
    directory = checkpoint_dir(config, run_id)
    if (directory / checkpoint.LAST).exists():
        config = config_for_resume(config, directory)
    seed_everything(config.seed)
    tracking.log_config(config, [DEFAULTS_FILE, experiment_file(name)])
    tracking.log_dataset(cache)  # with the song list of each split: what training could read
    if config.model.condition_on:
        # Its score on this label is not unsupervised: say so wherever the run is compared.
        tracking.set_tags({"label_conditioned": config.model.condition_on})
    train_set, val_set = WindowDataset(cache, "train", lyrics), WindowDataset(cache, "val", lyrics)
    check_split_sizes(train_set, val_set, config.train.batch_size)

    logged: set[int] = set()  # epochs MLflow already holds (a resumed run's)

    def after_epoch(metrics: dict[str, float], epoch: int) -> None:
        if epoch not in logged:  # a killed run's epochs after its last checkpoint: trained again
            tracking.log_metrics(metrics, epoch)
            tracking.log_peak_memory(trainer.device, epoch)
        if on_epoch is not None:
            on_epoch(metrics, epoch)

    model = build_model(name, config)
    trainer = Trainer(model, config, directory, run_id, on_epoch=after_epoch,
                      epoch_scorer=epoch_scorer(cache, config), tasks=(*TASKS, "row"))
    train_loader = loader_for(train_set, config, True, trainer.device)
    resumed = trainer.resume()
    if resumed:
        print(f"resuming run {run_id} after epoch {trainer.state.epoch}")
        logged |= tracking.log_missing_epochs(trainer.state.history)
    else:  # the architecture's own stage before training, if it has one (VaDE's pretraining)
        tracking.set_tags(trainer.model.before_fit(FitSetup(
            train_loader, config, trainer.device, trainer.precision, checkpoint_dir(config, "pretrain"),
            cache.dataset_digest, tracking.log_metrics)))
    tracking.log_params({"model.parameter_count": count_parameters(model)})
    tracking.log_environment(trainer.device, trainer.precision.label, trainer.precision.reason,
                             trainer.choices(train_loader))
    state = trainer.fit(train_loader, loader_for(val_set, config, False, trainer.device))

    trainer.load_best()
    tracking.log_metrics({"train/best_epoch": state.best_epoch, "train/epochs_run": state.epoch + 1})
    # The model is logged before evaluation, so a failure there (a degenerate split, a plot) ends
    # the run FAILED with the trained weights kept; a resumed run that failed there keeps that model.
    model_uri = (resumed and tracking.active_run_tag("model_uri")) or tracking.log_model(
        *build_embedding_model(trainer.model, cache, config, lyrics, trainer.device, trainer.precision))
    scores, figures = evaluate(trainer.model, cache, config, trainer.device, trainer.precision, lyrics)
    tracking.log_metrics(scores)
    tracking.log_figures(figures)
    tracking.log_peak_memory(trainer.device, state.epoch + 1)  # evaluation and model logging included
    print("\n".join([f"run {run_id} finished: model {model_uri}",
                     *headline_lines(scores, Protocol.from_config(config))]))
    return TrainResult(run_id, scores, model_uri, state)
