"""Evaluate a trained model under the declared protocol: val scores select, test scores report.

For each split (val, then test when the corpus has one) the latent means of its windows are
clustered by ONE declared method (eval.method, k = number of classes) at ONE declared unit
(eval.unit, song by default). Each headline score stands beside its chance level (labels
permuted across songs), a bootstrap interval over songs and AMI. Metric names carry the split:

    <split>/<task>/nmi, ami, ari, nmi_chance_mean, nmi_chance_p95, nmi_p_value, beats_chance,
        nmi_ci_low, nmi_ci_high, ari_ci_low, ari_ci_high, silhouette_labels, silhouette_clusters
    <split>/<task>/<other method>/...   eval.other_methods, logged, never picked (COMPARISON)
    <split>/<task>/<other unit>/...     window when the unit is song, and the reverse (COMPARISON)
    <split>/<task>/own_clusters/...     a model's own assignments (VaDE: its k, its own null)
    <split>/<task>/mfcc/...             MFCC statistics, the same split, unit, method and null

A model conditioned on a label scores that label under `<task>_conditioned` instead of `<task>`:
it was given the label, so that score is not an unsupervised result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from components.data.dataset import TASKS, WindowDataset, make_loader
from components.data.feature_cache import FeatureCache
from components.evaluation.aggregation import UNITS, to_unit
from components.evaluation.clustering import cluster, nmi_per_task, unscorable
from components.evaluation.significance import Resampling, partition_scores, verdict
from components.models.base import VAE
from components.settings import Experiment
from components.training.trainer import EpochScorer, Precision, autocast, embed_loader, to_device
from components.vocabulary import REPORT, SELECT

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not before the first step
    from matplotlib.figure import Figure

    from components.tracking.embedding_model import EmbeddingModel


# What the other methods and the other unit log: enough to compare, and to see their chance level.
COMPARISON = ("nmi", "ami", "ari", "nmi_chance_mean", "nmi_chance_p95", "nmi_p_value", "beats_chance")


@dataclass(frozen=True)
class Protocol:
    """What is scored and how, fixed by the config before any score is seen."""

    method: str
    other_methods: tuple[str, ...]
    unit: str
    resampling: Resampling
    conditioned_on: str | None = None

    @classmethod
    def from_config(cls, config: Experiment) -> Protocol:
        evaluation = config.eval
        resampling = Resampling(evaluation.permutations, evaluation.bootstrap,
                                evaluation.confidence, evaluation.alpha, config.seed)
        return cls(evaluation.method, tuple(m for m in evaluation.other_methods
                                               if m != evaluation.method),
                   evaluation.unit, resampling, config.model.condition_on)

    def for_unconditioned(self) -> Protocol:
        """The protocol for features no label went into (MFCC statistics)."""
        return replace(self, conditioned_on=None)

    def task_name(self, task: str) -> str:
        """genre, or genre_conditioned for a model that was given the genre."""
        return f"{task}_conditioned" if task == self.conditioned_on else task


def _silhouette(points: np.ndarray, groups: np.ndarray) -> float | None:
    from sklearn.metrics import silhouette_score

    found = len(np.unique(groups))
    return float(silhouette_score(points, groups)) if 1 < found < len(points) else None


def partition_report(points: np.ndarray, labels: np.ndarray, predicted: np.ndarray,
                     groups: np.ndarray | None, resampling: Resampling) -> dict[str, float]:
    """Scores of one partition of points: agreement with labels, its chance level and interval,
    and the silhouettes of the true labels (the separation the report's target means) and of the
    partition itself."""
    scores = partition_scores(labels, predicted, groups, resampling)
    for name, by in (("silhouette_labels", labels), ("silhouette_clusters", predicted)):
        value = _silhouette(points, by)
        if value is not None:
            scores[name] = value
    return scores


def protocol_scores(embeddings: np.ndarray, labels: dict[str, np.ndarray], songs: np.ndarray,
                    protocol: Protocol, split: str, own: np.ndarray | None = None,
                    variant: str | None = None, seed: int = 0) -> dict[str, float | str]:
    """Every score of one split under the protocol, from window-level embeddings [N, D], labels
    per task [N] and the song of each window [N]. variant (e.g. 'mfcc') scores another feature
    set at the headline unit and method only, under <split>/<task>/<variant>/ (features that
    never saw a label are scored with protocol.conditioned_on None: `for_unconditioned`)."""
    scores: dict[str, float | str] = {}
    units = [protocol.unit] if variant else [protocol.unit, *(u for u in UNITS if u != protocol.unit)]
    for unit in units:
        points, unit_labels, unit_own = to_unit(unit, embeddings, labels, songs, own)
        groups = songs if unit == "window" else None  # window-level nulls move songs together
        degenerate = unscorable(points)
        for task in TASKS:
            name = protocol.task_name(task)
            y = unit_labels[task]
            if len(np.unique(y)) < 2 or degenerate:
                where = f"{split}/{name}" + (f"/{variant}" if variant else "")
                scores[f"{where}/unscored"] = degenerate or "one class in split"
                continue
            k = len(np.unique(y))
            prefix = f"{split}/{name}" + (f"/{variant}" if variant else "")
            if unit != protocol.unit:
                prefix += f"/{unit}"
            methods = [protocol.method]
            if unit == protocol.unit and variant is None:
                methods += list(protocol.other_methods)
            for method in methods:
                predicted = cluster(points, k, method, seed)
                report = partition_report(points, y, predicted, groups, protocol.resampling)
                if method == protocol.method and unit == protocol.unit:
                    scores |= {f"{prefix}/{metric}": value for metric, value in report.items()}
                else:  # for comparison only: the score and its chance level, not the full report
                    named = prefix if method == protocol.method else f"{prefix}/{method}"
                    scores |= {f"{named}/{m}": report[m] for m in COMPARISON if m in report}
            if unit_own is not None and unit == protocol.unit and variant is None:
                report = partition_report(points, y, unit_own, groups, protocol.resampling)
                scores |= {f"{prefix}/own_clusters/{metric}": v for metric, v in report.items()}
    return scores


def headline_lines(scores: dict[str, float | str], protocol: Protocol) -> list[str]:
    """One line per task: the test score (val when there is no test split) with its interval,
    chance level and verdict, then MFCC's; a label-conditioned score is named as such."""
    split = REPORT if any(k.startswith(f"{REPORT}/") for k in scores) else SELECT
    lines = []
    for task in TASKS:
        name = protocol.task_name(task)
        if name != task:
            lines.append(f"{split} {task}: not an unsupervised result (the model is conditioned on "
                         f"{task}); its score is logged as {split}/{name}/nmi")
            continue
        parts = []
        for who, prefix in (("model", f"{split}/{task}"), ("untrained", f"{split}/{task}/untrained"),
                            ("MFCC", f"{split}/{task}/mfcc")):
            values = {k.removeprefix(prefix + "/"): v for k, v in scores.items()
                      if k.startswith(prefix + "/") and "/" not in k.removeprefix(prefix + "/")}
            if "nmi" not in values:
                if "unscored" in values:
                    parts.append(f"{who} unscored ({values['unscored']})")
                continue
            text = f"{who} NMI {values['nmi']:.3f}"
            if "nmi_std" in values:  # the untrained baseline: a mean over initialisations
                text += f" +- {values['nmi_std']:.3f}"
            if "nmi_ci_low" in values:
                text += f" [{values['nmi_ci_low']:.2f}, {values['nmi_ci_high']:.2f}]"
            if "nmi_chance_mean" in values:
                text += (f", chance {values['nmi_chance_mean']:.3f} (p95 {values['nmi_chance_p95']:.3f}), "
                         f"p={values['nmi_p_value']:.3f}: {verdict(values, protocol.resampling.alpha)}")
            parts.append(text)
        if parts:
            lines.append(f"{split} {task} ({protocol.unit}s, {protocol.method}): " + "; ".join(parts))
    return lines


def latent_means(model: VAE, dataset: WindowDataset, device: torch.device, precision: Precision,
                 batch_size: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
    """Latent means [N, latent] of every window in dataset order, the true labels per task (and
    the cache "row" of each window), and the model's own cluster ids [N] when it makes them
    (VaDE's `assign`), else None."""
    loader = make_loader(dataset, batch_size, shuffle=False, seed=0)
    means, labels, own = [], {key: [] for key in (*TASKS, "row")}, []
    assign = getattr(model, "assign", None)
    for batch, mu in embed_loader(model, loader, device, precision):
        means.append(mu.numpy())
        for task in (*TASKS, "row"):
            labels[task].append(batch[task].numpy())
        if assign is not None:
            with autocast(device, precision):
                own.append(assign(to_device(batch, device)).cpu().numpy())
    return (np.concatenate(means), {t: np.concatenate(v) for t, v in labels.items()},
            np.concatenate(own) if own else None)


def song_ids(cache: FeatureCache, rows: np.ndarray) -> np.ndarray:
    """The song of each window, by cache row."""
    return cache.rows.set_index("row").loc[rows, "song_id"].to_numpy()


def epoch_scorer(cache: FeatureCache, config: Experiment) -> EpochScorer | None:
    """The trainer's per-epoch val/<task>_nmi (curves, pruning) under eval.epoch_method, at the
    protocol's unit; none for the label a model is conditioned on (given to it: nothing to watch).
    None when eval.epoch_method is null."""
    evaluation, condition_on = config.eval, config.model.condition_on
    if evaluation.epoch_method is None:
        return None

    def scores(means: np.ndarray, labels: dict[str, np.ndarray]) -> dict[str, float]:
        means, labels, _ = to_unit(evaluation.unit, means, labels, song_ids(cache, labels.pop("row")))
        labels.pop(condition_on, None)
        return nmi_per_task(means, labels, evaluation.epoch_method, config.seed)
    return scores


def reconstruction_figure(model: VAE, dataset: WindowDataset, device: torch.device,
                          precision: Precision, count: int = 3) -> Figure:
    from components.evaluation import plots
    picks = np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).astype(int)
    batch = dataset.__getitems__(picks.tolist())
    model.eval()
    with torch.no_grad(), autocast(device, precision):
        recon = model(to_device(batch, device)).recon.float().cpu()
    rows = dataset.cache.rows.set_index("row").loc[batch["row"].numpy()]
    titles = [f"{r.song_id} @ {r.start_seconds:.0f}s" for r in rows.itertuples()]
    return plots.reconstruction(batch["mel"][:, 0].numpy(), recon[:, 0].numpy(), titles)


def split_names(cache: FeatureCache) -> list[str]:
    """val, and test when the corpus has test songs."""
    present = set(cache.rows.split)
    return [split for split in (SELECT, REPORT) if split in present]


def model_and_mfcc_scores(embeddings: np.ndarray, labels: dict[str, np.ndarray], songs: np.ndarray,
                          own: np.ndarray | None, rows: np.ndarray, cache: FeatureCache,
                          protocol: Protocol, split: str, seed: int) -> dict[str, float | str]:
    """A model's scores on one split's windows (cache rows) under the protocol, and those of the
    MFCC statistics of the same windows beside them."""
    from components.evaluation.mfcc_baseline import mfcc_statistics

    scores = protocol_scores(embeddings, labels, songs, protocol, split, own, seed=seed)
    return scores | protocol_scores(mfcc_statistics(cache, rows), labels, songs,
                                    protocol.for_unconditioned(), split, variant="mfcc", seed=seed)


def evaluate_split(model: VAE, cache: FeatureCache, split: str, config: Experiment,
                   device: torch.device, precision: Precision,
                   lyrics: tuple[dict[str, np.ndarray], int] | None = None,
                   ) -> tuple[dict[str, float | str], np.ndarray, dict[str, np.ndarray], WindowDataset]:
    """The model's and MFCC's scores on one split; also the unit-level points and label names
    for the projection figure, and the split's dataset."""
    protocol = Protocol.from_config(config)
    dataset = WindowDataset(cache, split, lyrics)
    embeddings, labels, own = latent_means(model, dataset, device, precision,
                                           config.train.batch_size)
    rows = labels.pop("row")
    songs = song_ids(cache, rows)
    scores = model_and_mfcc_scores(embeddings, labels, songs, own, rows, cache, protocol, split,
                                   config.seed)
    points, unit_labels, _ = to_unit(protocol.unit, embeddings, labels, songs)
    names = {task: np.asarray(cache.vocab[task])[unit_labels[task]] for task in TASKS}
    return scores, points, names, dataset


def untrained_scores(config: Experiment, dataset: WindowDataset, split: str, device: torch.device,
                     precision: Precision) -> dict[str, float]:
    """What training added is read against this: the headline scores of the same architecture
    with untrained weights (eval.untrained_inits initialisations, seeds seed+1, seed+2, ...), their
    mean under <split>/<task>/untrained/<score> and their spread under .../<score>_std. One
    initialisation is no baseline: its genre NMI alone ranged 0.08-0.28 over 5 seeds on recorded
    music."""
    from components.models import build_model

    protocol = Protocol.from_config(config)
    protocol = replace(protocol, resampling=replace(protocol.resampling, bootstrap=0))  # p-values only
    kept = ("nmi", "ami", "ari", "silhouette_labels", "nmi_p_value")
    runs: list[dict[str, float]] = []
    state = torch.get_rng_state()
    try:
        for init in range(config.eval.untrained_inits):
            torch.manual_seed(config.seed + 1 + init)
            model = build_model(config.model.name, config).to(device)
            embeddings, labels, _ = latent_means(model, dataset, device, precision,
                                                 config.train.batch_size)
            songs = song_ids(dataset.cache, labels.pop("row"))
            scores = protocol_scores(embeddings, labels, songs, protocol, split, variant="untrained",
                                     seed=config.seed)
            runs.append({k: float(v) for k, v in scores.items() if k.rsplit("/", 1)[1] in kept})
    finally:
        torch.set_rng_state(state)  # the trained model's own randomness is not disturbed
    names = set.intersection(*(set(r) for r in runs)) if runs else set()
    summary = {name: float(np.mean([r[name] for r in runs])) for name in names}
    summary |= {f"{name}_std": float(np.std([r[name] for r in runs])) for name in names}
    return summary


def evaluate(model: VAE, cache: FeatureCache, config: Experiment, device: torch.device,
             precision: Precision, lyrics: tuple[dict[str, np.ndarray], int] | None = None,
             ) -> tuple[dict[str, float | str], dict[str, Figure]]:
    """Scores on val (selection) and test (report), the same architecture untrained on the
    reporting split, and the figures of the reporting split."""
    from components.evaluation import plots
    scores: dict[str, float | str] = {}
    for split in split_names(cache):
        split_scores, points, names, dataset = evaluate_split(model, cache, split, config, device,
                                                              precision, lyrics)
        scores |= split_scores
    scores |= untrained_scores(config, dataset, split, device, precision)
    figures: dict[str, Figure] = {}
    keep = np.random.default_rng(0).permutation(len(points))[: config.eval.projection_points]
    if len(keep) >= 3 and points.shape[1] >= 2:  # PCA to 2-D needs 2 dimensions and a few points
        figures[f"plots/latent_projection_{split}.png"] = plots.latent_projection(
            points[keep], {t: v[keep] for t, v in names.items()}, f"{config.model.name} ({split})")
    figures["plots/reconstruction.png"] = reconstruction_figure(model, dataset, device, precision)
    return scores, figures


Windows = tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray | None, np.ndarray]


def served_embeddings(served: EmbeddingModel, cache: FeatureCache, split: str,
                      lyrics: tuple[dict[str, np.ndarray], int] | None = None) -> Windows:
    """A logged model's latent means of one split's windows through its served predict (its own
    normalisation statistics, vocabulary and label inputs): embeddings [N, latent], labels per
    task [N], the song of each window [N], its own cluster ids [N] (VaDE) or None, cache rows [N]."""
    from components.tracking.embedding_model import CHUNK, InputError

    # The dataset gives the split's rows, label indices and per-window lyrics; the windows are
    # read raw, since the served model normalises with its own statistics.
    dataset = WindowDataset(cache, split, lyrics)
    if len(dataset) == 0:
        raise InputError(f"the corpus has no {split} songs to score")
    rows = dataset.rows
    embeddings, own = [], []
    for start in range(0, len(rows), CHUNK):
        chunk = rows.iloc[start:start + CHUNK]
        request = {"mel": cache.read(chunk.row.to_numpy()).astype(np.float32)[:, None]}
        if served.condition_on:
            names = served.vocab[served.condition_on]
            unknown = sorted(set(chunk[served.condition_on]) - set(names))
            if unknown:
                raise InputError(f"{served.name} is conditioned on {served.condition_on} and knows "
                                 f"{names}; this corpus has {unknown}: it cannot be scored by this model")
            request["label"] = chunk[served.condition_on].map(names.index).to_numpy(np.int64)
        if served.lyrics_dim and dataset.lyrics is not None:
            request["lyrics"] = dataset.lyrics[start:start + CHUNK]
        out = served.predict(None, request)
        embeddings.append(out["embedding"])
        if "cluster_model" in out:
            own.append(out["cluster_model"])
    return (np.concatenate(embeddings), dict(dataset.labels), rows.song_id.to_numpy(),
            np.concatenate(own) if own else None, dataset.row_ids)


def served_scores(served: EmbeddingModel, cache: FeatureCache, split: str, protocol: Protocol,
                  seed: int, lyrics: tuple[dict[str, np.ndarray], int] | None = None,
                  ) -> dict[str, float | str]:
    """A logged model's scores on one split of a cache under the protocol; MFCC beside them."""
    embeddings, labels, songs, own, rows = served_embeddings(served, cache, split, lyrics)
    return model_and_mfcc_scores(embeddings, labels, songs, own, rows, cache, protocol, split, seed)
