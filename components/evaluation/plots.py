"""Figures logged with every run: a 2-D projection of the latent means and input vs reconstruction."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: runs on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402


def latent_projection(embeddings: np.ndarray, labels: dict[str, np.ndarray], title: str) -> Figure:
    """PCA to 2-D, one panel per task, points coloured by that task's true label. A 1-d latent or a
    single point still draws (PC 2, or both, at 0) instead of failing the run after training."""
    components = min(2, *embeddings.shape)
    points = np.zeros((len(embeddings), 2))
    if components > 0 and len(embeddings) > 1:
        points[:, :components] = PCA(n_components=components, random_state=0).fit_transform(embeddings)
    fig, axes = plt.subplots(1, len(labels), figsize=(6 * len(labels), 5), squeeze=False)
    for ax, (task, values) in zip(axes[0], labels.items()):
        for value in sorted(set(values)):
            mask = values == value
            ax.scatter(points[mask, 0], points[mask, 1], s=12, alpha=0.75, label=str(value))
        ax.set_title(f"{title}: latent means by {task} (PCA)")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.legend(fontsize=8, markerscale=1.5)
    fig.tight_layout()
    return fig


def reconstruction(inputs: np.ndarray, recons: np.ndarray, titles: list[str]) -> Figure:
    """Rows of (input, reconstruction) normalised log-mel pairs, [n, n_mels, T] each."""
    fig, axes = plt.subplots(len(inputs), 2, figsize=(12, 2.6 * len(inputs)), squeeze=False)
    for row, (x, r, title) in enumerate(zip(inputs, recons, titles)):
        low, high = np.percentile(x, [1, 99])
        for col, (image, name) in enumerate([(x, "input"), (r, "reconstruction")]):
            ax = axes[row, col]
            ax.imshow(image, origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma")
            ax.set_title(f"{title}: {name}", fontsize=9)
            ax.set_ylabel("mel bin")
    axes[-1, 0].set_xlabel("frame")
    axes[-1, 1].set_xlabel("frame")
    fig.tight_layout()
    return fig
