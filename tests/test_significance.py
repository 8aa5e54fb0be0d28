"""Chance levels and intervals: exact to scikit-learn, per song, and telling structure from noise."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from components.evaluation.clustering import cluster
from components.evaluation.significance import (
    Resampling,
    _codes,
    _contingency,
    nmi_ari,
    partition_scores,
    permutation_null,
)


@pytest.mark.parametrize("seed", range(5))
def test_contingency_scores_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    labels, predicted = rng.integers(0, 4, 60), rng.integers(0, 1 + seed, 60)
    table = _contingency(_codes(labels)[0][None], _codes(predicted)[0], len(np.unique(labels)),
                         len(np.unique(predicted)), None)
    nmi, ari = nmi_ari(table)
    assert nmi[0] == pytest.approx(normalized_mutual_info_score(labels, predicted), abs=1e-12)
    assert ari[0] == pytest.approx(adjusted_rand_score(labels, predicted), abs=1e-12)


def test_random_embeddings_score_inside_the_null():
    rng = np.random.default_rng(0)
    p_values = []
    for draw in range(20):
        labels = np.repeat(np.arange(3), 10)
        predicted = cluster(rng.normal(size=(30, 8)), 3, "kmeans", seed=draw)
        scores = partition_scores(labels, predicted, None, Resampling(permutations=500, seed=draw))
        p_values.append(scores["nmi_p_value"])
        assert scores["nmi_ci_low"] <= scores["nmi"] + 1e-9
    # Under the null p is uniform: most draws are not significant, and none is a 1-in-500 event.
    assert np.mean(np.array(p_values) > 0.05) >= 0.8 and min(p_values) > 0.004


def test_separated_blobs_beat_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 8)
    embeddings = rng.normal(size=(24, 8)) + 6 * np.eye(8)[labels]
    scores = partition_scores(labels, cluster(embeddings, 3, "kmeans"), None, Resampling())
    assert scores["nmi"] > 0.9 and scores["nmi_p_value"] < 0.01 and scores["beats_chance"] == 1.0
    assert scores["nmi_chance_p95"] < scores["nmi_ci_low"] <= scores["nmi"] <= scores["nmi_ci_high"]


def test_null_moves_a_songs_windows_together():
    """10 songs of 3 identical windows each. Permuting per window would break the songs apart and
    put the null near 0; permuting per song keeps it where a random song partition scores."""
    songs = np.repeat(np.arange(10), 3)
    song_labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    labels = song_labels[songs]
    predicted = np.random.default_rng(1).integers(0, 3, 10)[songs]  # a partition of songs
    per_song = permutation_null(labels, predicted, songs, 2000, seed=0)
    per_window = permutation_null(labels, predicted, None, 2000, seed=0)
    song_level = permutation_null(song_labels, predicted[::3], None, 2000, seed=0)
    # Window level with songs as groups is the song-level null (same partition of songs, each
    # counted 3 times): the same distribution of NMI.
    assert per_song.mean() == pytest.approx(song_level.mean(), abs=0.02)
    assert per_song.mean() > 2 * per_window.mean()
    scores = partition_scores(labels, predicted, songs, Resampling(permutations=2000))
    assert scores["nmi_chance_mean"] == pytest.approx(per_song.mean(), abs=0.02)


def test_vade_style_many_clusters_get_their_own_chance_level():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    scores_k3 = partition_scores(labels, rng.integers(0, 3, 30), None, Resampling(bootstrap=0))
    scores_k15 = partition_scores(labels, rng.integers(0, 15, 30), None, Resampling(bootstrap=0))
    assert scores_k15["nmi_chance_mean"] > scores_k3["nmi_chance_mean"] + 0.2


def test_the_interval_holds_a_chance_level_score_despite_nmis_small_sample_bias():
    """Resampled songs repeat, and NMI grows on fewer distinct points: the raw percentile interval
    of a chance-level score lies above it. The bias-shifted interval holds the score."""
    rng = np.random.default_rng(19)  # NMI 0.018: the raw 2.5% quantile of the resamples is above it
    labels, predicted = np.repeat(np.arange(3), 7)[rng.permutation(21)], np.repeat(np.arange(3), 7)
    scores = partition_scores(labels, predicted, None, Resampling())
    assert scores["nmi_p_value"] > 0.05
    assert scores["nmi_ci_low"] <= scores["nmi"] <= scores["nmi_ci_high"]
    assert scores["ari_ci_low"] <= scores["ari"] <= scores["ari_ci_high"]
