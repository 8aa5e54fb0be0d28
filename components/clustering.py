"""Clustering scores of a latent space: KMeans / Agglomerative / GMM with k = number of classes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sklearn.cluster import KMeans

# scikit-learn is imported where it is used: its 1.7 s import is not on the way to the first
# training step (benchmarks/startup.py).

METHODS = ("kmeans", "agglomerative", "gmm")


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


def score(embeddings: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """NMI and ARI against the true labels; silhouette of the predicted partition (the cluster
    quality the report's targets mean), 0 when fewer than two clusters were found."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

    found = len(np.unique(predicted))
    silhouette = (float(silhouette_score(embeddings, predicted))
                  if 1 < found < len(embeddings) else 0.0)
    return {"nmi": float(normalized_mutual_info_score(labels, predicted)),
            "ari": float(adjusted_rand_score(labels, predicted)),
            "silhouette": silhouette}


def evaluate_task(embeddings: np.ndarray, labels: np.ndarray, task: str,
                  methods: tuple[str, ...] | list[str] = METHODS, seed: int = 0,
                  extra_assignments: dict[str, np.ndarray] | None = None) -> dict[str, float | str]:
    """Scores under the stable names: '<task>/nmi_<method>' etc. for every method, and
    '<task>/nmi|ari|silhouette' of the method with the best NMI (named in '<task>/best_method').

    extra_assignments: clusterings a model makes itself (VaDE's responsibilities), scored alike.
    """
    k = len(np.unique(labels))
    assignments = {m: cluster(embeddings, k, m, seed) for m in methods}
    assignments |= extra_assignments or {}
    results: dict[str, float | str] = {}
    per_method = {m: score(embeddings, labels, pred) for m, pred in assignments.items()}
    for method, scores in per_method.items():
        for name, value in scores.items():
            results[f"{task}/{name}_{method}"] = value
    best = max(per_method, key=lambda m: per_method[m]["nmi"])
    for name, value in per_method[best].items():
        results[f"{task}/{name}"] = value
    results[f"{task}/best_method"] = best
    return results


def nmi_per_task(embeddings: np.ndarray, labels: dict[str, np.ndarray], method: str,
                 seed: int = 0) -> dict[str, float]:
    """'val/<task>_nmi' of one clustering method: the cheap per-epoch score that draws NMI
    curves and that Optuna's pruners compare. Tasks with one class in the split are left out."""
    from sklearn.metrics import normalized_mutual_info_score

    return {f"val/{task}_nmi": float(normalized_mutual_info_score(
                y, cluster(embeddings, len(np.unique(y)), method, seed)))
            for task, y in labels.items() if len(np.unique(y)) > 1}
