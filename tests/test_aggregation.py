"""Song-level evaluation: window latent means averaged per song, labels and own clusters carried."""

from __future__ import annotations

import numpy as np
import pytest

from components.config import ConfigError
from components.evaluation.aggregation import to_unit


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


@pytest.mark.parametrize(("embeddings", "reason"), [
    (np.ones((6, 4)), "every point identical (collapsed latent)"),
    (np.where(np.eye(6, 4) > 0, np.nan, 0.0) + np.arange(6)[:, None], "non-finite embeddings"),
])
def test_points_no_clustering_can_mean_anything_are_reported_unscored(embeddings, reason):
    from components.evaluation.clustering import nmi_per_task
    from components.evaluation.scoring import Protocol, headline_lines, protocol_scores
    from components.evaluation.significance import Resampling

    labels = {"genre": np.array(["a", "b"] * 3), "language": np.array(["x", "x", "y", "y", "z", "z"])}
    protocol = Protocol("kmeans", ("gmm",), "song", Resampling(20, 20))
    scores = protocol_scores(embeddings, labels, np.array([f"s{i}" for i in range(6)]), protocol, "test")
    assert scores == {"test/genre/unscored": reason, "test/language/unscored": reason}
    assert "test genre (songs, kmeans): model unscored (" + reason + ")" in headline_lines(scores, protocol)
    assert nmi_per_task(embeddings, labels, "kmeans") == {}  # the per-epoch curve skips it too


def test_a_one_dimensional_latent_is_scored():
    from components.evaluation.scoring import Protocol, protocol_scores
    from components.evaluation.significance import Resampling

    points = np.array([[0.0], [0.1], [5.0], [5.1]])
    labels = {"genre": np.array(["a", "a", "b", "b"]), "language": np.array(["x", "y", "x", "y"])}
    scores = protocol_scores(points, labels, np.array(["s0", "s1", "s2", "s3"]),
                             Protocol("kmeans", (), "song", Resampling(20, 20)), "val")
    assert scores["val/genre/nmi"] == pytest.approx(1.0)
