"""The unit that is clustered: 30 s windows (the report's protocol) or whole songs.

A song is what a researcher wants grouped by genre or language; its windows share one label,
so averaging their latent means removes within-song variation (verse vs chorus, intro) that
window-level clustering has to fight. `eval.unit: song` scores songs, `window` scores windows.
"""

from __future__ import annotations

import numpy as np

from components.config import ConfigError
from components.vocabulary import UNITS


def song_means(embeddings: np.ndarray, songs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean embedding per song [S, D] (songs in sorted order) and each window's song index [N]."""
    _, inverse = np.unique(songs, return_inverse=True)
    sums = np.zeros((inverse.max() + 1 if len(inverse) else 0, embeddings.shape[1]))
    np.add.at(sums, inverse, embeddings)
    return sums / np.bincount(inverse)[:, None], inverse


def to_unit(unit: str, embeddings: np.ndarray, labels: dict[str, np.ndarray], songs: np.ndarray,
            own: np.ndarray | None = None,
            ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
    """(embeddings, labels per task, own cluster ids) at the chosen unit. A model's own window
    assignments (VaDE) become the song's most frequent assignment."""
    if unit not in UNITS:
        raise ConfigError(f"eval.unit={unit!r} is not one of {', '.join(UNITS)}")
    if unit == "window":
        return embeddings, labels, own
    means, inverse = song_means(embeddings, songs)
    first = np.zeros(len(means), dtype=np.int64)
    first[inverse[::-1]] = np.arange(len(inverse))[::-1]  # first window of each song
    song_own = None
    if own is not None:
        song_own = np.array([np.bincount(own[inverse == s]).argmax() for s in range(len(means))])
    return means, {task: y[first] for task, y in labels.items()}, song_own
