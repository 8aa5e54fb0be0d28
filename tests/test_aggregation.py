"""Song-level evaluation: window latent means averaged per song, labels and own clusters carried."""

from __future__ import annotations

import numpy as np
import pytest

from components.aggregation import to_unit
from components.config import ConfigError


def test_song_unit_averages_windows_and_keeps_each_songs_label():
    embeddings = np.array([[0.0, 2.0], [2.0, 4.0], [10.0, 10.0], [5.0, 5.0], [7.0, 7.0]])
    songs = np.array(["b", "b", "a", "c", "c"])
    labels = {"genre": np.array([1, 1, 0, 2, 2]), "language": np.array([0, 0, 3, 1, 1])}
    own = np.array([4, 4, 1, 0, 2])
    means, song_labels, song_own = to_unit("song", embeddings, labels, songs, own)
    np.testing.assert_allclose(means, [[10, 10], [1, 3], [6, 6]])  # songs a, b, c
    assert song_labels["genre"].tolist() == [0, 1, 2] and song_labels["language"].tolist() == [3, 0, 1]
    assert song_own.tolist() == [1, 4, 0]  # most frequent window assignment (ties: the lowest id)


def test_window_unit_is_the_identity_and_unknown_units_are_refused():
    embeddings = np.ones((3, 2))
    labels = {"genre": np.array([0, 1, 0])}
    assert to_unit("window", embeddings, labels, np.array(["a", "a", "b"]))[0] is embeddings
    with pytest.raises(ConfigError, match="eval.unit='track' is not one of window, song"):
        to_unit("track", embeddings, labels, np.array(["a", "a", "b"]))
