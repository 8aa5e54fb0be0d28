"""Chance level and uncertainty of a clustering score, with songs (not windows) as the unit.

A partition of N points is scored against true labels by NMI, AMI and ARI. Two resamplings
say what the score is worth:

- a permutation null: the labels are shuffled across *songs* (a song's windows move together)
  while the partition stays fixed, so the null holds the cluster sizes, the number of clusters
  (VaDE's 15 as well as k = classes) and the song structure of the real score. The p-value is
  (1 + #null >= observed) / (1 + draws): ties count against the score, so a coarse score on a
  few songs is never called significant by luck of the tie-break;
- a bootstrap over songs: songs drawn with replacement (windows weighted by their song's draw
  count), the partition fixed, for an interval of the score on songs like these. NMI is biased
  upward on few points, and a resample holds only ~63% distinct songs, so the raw percentile
  interval sits above the score (a chance-level NMI of 0.01 on 19 songs got [0.02, 0.37]); the
  interval is the percentile interval shifted down by the bootstrap's estimate of that bias
  (mean of the resamples minus the score), clipped to the score's range.

Both are computed for every draw at once from contingency tables (numpy bincount), exact to
scikit-learn's NMI (arithmetic normalisation) and ARI (tests compare them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Resampling:
    """eval.permutations / eval.bootstrap draws, eval.confidence of the interval, eval.alpha for
    'beats chance', and the seed of both resamplings."""

    permutations: int = 1000
    bootstrap: int = 1000
    confidence: float = 0.95
    alpha: float = 0.05
    seed: int = 0


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    uniques, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64), len(uniques)


def _contingency(labels: np.ndarray, predicted: np.ndarray, k_labels: int, k_predicted: int,
                 weights: np.ndarray | None) -> np.ndarray:
    """[D, k_labels, k_predicted] counts for labels [D, N] (one row per draw), predicted [N]."""
    draws, n = labels.shape
    cell = labels * k_predicted + predicted[None, :]
    flat = cell + (np.arange(draws) * k_labels * k_predicted)[:, None]
    counts = np.bincount(flat.ravel(), weights=None if weights is None else weights.ravel(),
                         minlength=draws * k_labels * k_predicted)
    return counts.reshape(draws, k_labels, k_predicted).astype(np.float64)


def _entropy(counts: np.ndarray, total: np.ndarray) -> np.ndarray:
    p = counts / total[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)


def nmi_ari(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NMI (arithmetic mean of the entropies, scikit-learn's default) and ARI per contingency
    table [D, K1, K2] -> ([D], [D])."""
    total = table.sum(axis=(1, 2))
    rows, cols = table.sum(axis=2), table.sum(axis=1)
    h_rows, h_cols = _entropy(rows, total), _entropy(cols, total)
    outer = rows[:, :, None] * cols[:, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(table > 0, table * np.log(table * total[:, None, None] / outer), 0.0)
    mutual = terms.sum(axis=(1, 2)) / total
    denominator = (h_rows + h_cols) / 2
    # scikit-learn: both partitions with a single cluster agree perfectly; one of them alone scores 0
    both_single = (h_rows == 0) & (h_cols == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nmi = np.where(both_single, 1.0, np.where(denominator > 0, mutual / denominator, 0.0))
    nmi = np.clip(nmi, 0.0, 1.0)

    def pairs(x: np.ndarray) -> np.ndarray:
        return x * (x - 1) / 2

    index = pairs(table).sum(axis=(1, 2))
    sum_rows, sum_cols = pairs(rows).sum(axis=1), pairs(cols).sum(axis=1)
    expected = sum_rows * sum_cols / pairs(total)
    maximum = (sum_rows + sum_cols) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        ari = np.where(maximum != expected, (index - expected) / (maximum - expected), 1.0)
    return nmi, ari


def songs_of(groups: np.ndarray | None, n: int) -> np.ndarray:
    """Song index [N] of each point; None: every point is its own song (song-level scoring)."""
    return np.arange(n) if groups is None else _codes(groups)[0]


def permutation_null(labels: np.ndarray, predicted: np.ndarray, groups: np.ndarray | None,
                     draws: int, seed: int) -> np.ndarray:
    """NMI of the fixed partition against labels permuted across songs, [draws]."""
    label_codes, k_labels = _codes(labels)
    predicted, k_predicted = _codes(predicted)
    song = songs_of(groups, len(labels))
    first = np.zeros(song.max() + 1, dtype=np.int64)
    first[song[::-1]] = np.arange(len(song))[::-1]
    song_labels = label_codes[first]  # one label per song (a song's windows share it)
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(song_labels) for _ in range(draws)])
    table = _contingency(shuffled[:, song], predicted, k_labels, k_predicted, None)
    return nmi_ari(table)[0]


def bootstrap_scores(labels: np.ndarray, predicted: np.ndarray, groups: np.ndarray | None,
                     draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(NMI [draws], ARI [draws]) on songs drawn with replacement, the partition fixed."""
    label_codes, k_labels = _codes(labels)
    predicted, k_predicted = _codes(predicted)
    song = songs_of(groups, len(labels))
    n_songs = song.max() + 1
    rng = np.random.default_rng(seed + 1)  # not the null's stream
    counts = rng.multinomial(n_songs, np.full(n_songs, 1 / n_songs), size=draws)  # [D, songs]
    weights = counts[:, song].astype(np.float64)
    repeated = np.broadcast_to(label_codes, (draws, len(labels)))
    return nmi_ari(_contingency(repeated, predicted, k_labels, k_predicted, weights))


def partition_scores(labels: np.ndarray, predicted: np.ndarray, groups: np.ndarray | None,
                     resampling: Resampling) -> dict[str, float]:
    """nmi, ami, ari of the partition; nmi_chance_mean / _p95 / nmi_p_value from the song-level
    permutation null; nmi_ci_low / _high and ari_ci_low / _high from the song bootstrap;
    beats_chance 1.0 when nmi_p_value < alpha. groups: the song of each point (window-level
    scoring), None when the points are songs."""
    from sklearn.metrics import adjusted_mutual_info_score

    label_codes, k_labels = _codes(labels)
    codes, k_predicted = _codes(predicted)
    table = _contingency(label_codes[None, :], codes, k_labels, k_predicted, None)
    nmi, ari = (float(v[0]) for v in nmi_ari(table))
    scores = {"nmi": nmi, "ami": float(adjusted_mutual_info_score(labels, predicted)), "ari": ari}
    if resampling.permutations > 0:
        null = permutation_null(labels, predicted, groups, resampling.permutations, resampling.seed)
        p_value = (1 + int((null >= nmi - 1e-12).sum())) / (1 + len(null))
        scores |= {"nmi_chance_mean": float(null.mean()),
                   "nmi_chance_p95": float(np.quantile(null, 0.95)),
                   "nmi_p_value": p_value, "beats_chance": float(p_value < resampling.alpha)}
    if resampling.bootstrap > 0:
        boot_nmi, boot_ari = bootstrap_scores(labels, predicted, groups, resampling.bootstrap,
                                              resampling.seed)
        tail = (1 - resampling.confidence) / 2
        for name, values, floor in (("nmi", boot_nmi, 0.0), ("ari", boot_ari, -1.0)):
            bias = float(values.mean()) - scores[name]
            low, high = np.clip(np.quantile(values, [tail, 1 - tail]) - bias, floor, 1.0)
            scores |= {f"{name}_ci_low": float(low), f"{name}_ci_high": float(high)}
    return scores


def verdict(scores: dict[str, float], alpha: float) -> str:
    """'beats chance' / 'chance' for a printed line: a score inside the null is chance, whatever
    its size."""
    if "nmi_p_value" not in scores:
        return "no chance level computed"
    return "beats chance" if scores["nmi_p_value"] < alpha else "chance"
