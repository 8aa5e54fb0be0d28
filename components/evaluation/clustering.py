"""Clustering a latent space: KMeans / Agglomerative / GMM with k = number of classes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sklearn.cluster import KMeans

# scikit-learn is imported where it is used: its 1.7 s import is not on the way to the first
# training step (benchmarks/startup.py).

from components.vocabulary import METHODS


def kmeans(k: int, seed: int = 0) -> KMeans:
    """The KMeans of evaluation and of the served model's centroids: one setting for both."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed)


def cluster(embeddings: np.ndarray, k: int, method: str, seed: int = 0) -> np.ndarray:
    """Cluster ids [N] for embeddings [N, D]."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.mixture import GaussianMixture

    if method == "kmeans":
        return kmeans(k, seed).fit_predict(embeddings)
    if method == "agglomerative":
        return AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(embeddings)
    if method == "gmm":
        # Diagonal covariances: a full 128x128 covariance per cluster is not estimable from
        # a few hundred windows.
        gmm = GaussianMixture(n_components=k, covariance_type="diag", reg_covar=1e-4,
                              n_init=3, random_state=seed)
        return gmm.fit(embeddings).predict(embeddings)
    raise ValueError(f"unknown clustering method '{method}'; valid: {', '.join(METHODS)}")


def unscorable(points: np.ndarray) -> str | None:
    """Why no clustering of these points means anything, or None: a partition of non-finite or
    all-identical points (a collapsed latent) is arbitrary, whatever it scores."""
    if not np.isfinite(points).all():
        return "non-finite embeddings"
    if len(points) > 1 and np.ptp(points, axis=0).max() == 0:
        return "every point identical (collapsed latent)"
    return None


def nmi_per_task(embeddings: np.ndarray, labels: dict[str, np.ndarray], method: str,
                 seed: int = 0) -> dict[str, float]:
    """'val/<task>_nmi' of one clustering method: the cheap per-epoch score that draws NMI
    curves and that Optuna's pruners compare. Tasks with one class in the split are left out."""
    from sklearn.metrics import normalized_mutual_info_score

    if unscorable(embeddings):
        return {}
    return {f"val/{task}_nmi": float(normalized_mutual_info_score(
                y, cluster(embeddings, len(np.unique(y)), method, seed)))
            for task, y in labels.items() if len(np.unique(y)) > 1}
