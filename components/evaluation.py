"""Evaluate a trained model: latent means of one split -> clustering scores per task + figures."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from components.aggregation import to_unit
from components.clustering import evaluate_task
from components.dataset import TASKS, WindowDataset, make_loader
from components.feature_cache import FeatureCache
from components.models import VAE
from components.training import Precision, autocast, embed_loader, to_device

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn, not before the first step
    from matplotlib.figure import Figure


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


def clustering_scores(embeddings: np.ndarray, labels: dict[str, np.ndarray],
                      methods: list[str], seed: int,
                      own: np.ndarray | None = None) -> dict[str, float | str]:
    """'<task>/<metric>[_<method>]' for genre and language. A task with a single class in the
    split cannot be scored and is reported as such instead of as a perfect or zero score."""
    scores: dict[str, float | str] = {}
    for task in TASKS:
        if len(np.unique(labels[task])) < 2:
            scores[f"{task}/best_method"] = "unscored: one class in split"
            continue
        extra = {"model": own} if own is not None else None  # e.g. genre/nmi_model for VaDE
        scores |= evaluate_task(embeddings, labels[task], task, methods, seed, extra)
    return scores


def song_ids(cache: FeatureCache, rows: np.ndarray) -> np.ndarray:
    """The song of each window, by cache row."""
    return cache.rows.set_index("row").loc[rows, "song_id"].to_numpy()


def reconstruction_figure(model: VAE, dataset: WindowDataset, device: torch.device,
                          precision: Precision, count: int = 3) -> Figure:
    from components import plots

    picks = np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).astype(int)
    batch = dataset.__getitems__(picks.tolist())
    model.eval()
    with torch.no_grad(), autocast(device, precision):
        recon = model(to_device(batch, device)).recon.float().cpu()
    rows = dataset.cache.rows.set_index("row").loc[batch["row"].numpy()]
    titles = [f"{r.song_id} @ {r.start_seconds:.0f}s" for r in rows.itertuples()]
    return plots.reconstruction(batch["mel"][:, 0].numpy(), recon[:, 0].numpy(), titles)


def evaluate(model: VAE, cache: FeatureCache, config: dict[str, Any], device: torch.device,
             precision: Precision, lyrics: tuple[dict[str, np.ndarray], int] | None = None,
             ) -> tuple[dict[str, float | str], dict[str, Figure]]:
    """Scores on config.eval.split and the figures to log beside them."""
    from components import plots

    dataset = WindowDataset(cache, config["eval"]["split"], lyrics)
    if len(dataset) == 0:
        raise ValueError(f"eval.split '{config['eval']['split']}' has no windows; "
                         f"set data.val_fraction > 0 or eval.split: train")
    embeddings, labels, own = latent_means(model, dataset, device, precision,
                                           config["train"]["batch_size"])
    embeddings, labels, own = to_unit(config["eval"]["unit"], embeddings, labels,
                                      song_ids(cache, labels["row"]), own)
    scores = clustering_scores(embeddings, labels, config["eval"]["methods"], config["seed"], own)
    names = {task: np.asarray(cache.vocab[task])[labels[task]] for task in TASKS}
    keep = np.random.default_rng(0).permutation(len(embeddings))[: config["eval"]["projection_points"]]
    figures = {
        "plots/latent_projection.png": plots.latent_projection(
            embeddings[keep], {t: v[keep] for t, v in names.items()}, config["model"]["name"]),
        "plots/reconstruction.png": reconstruction_figure(model, dataset, device, precision),
    }
    return scores, figures
