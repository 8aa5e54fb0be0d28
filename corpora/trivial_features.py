"""How much trivial file properties tell the labels of a corpus: KMeans NMI per task and feature.

    python -m corpora.trivial_features path/to/metadata.csv [--permutations 200]

Features per song: duration, container/codec one-hot, sample rate, channel count, RMS level
(dBFS), and, when the corpus has a PROVENANCE.csv, the sample rate and codec of the source
recording (what the labels would leak had the files kept their original encoding). Each is
clustered with KMeans (k = number of classes of the task) and scored with NMI against the labels,
beside the chance level: the mean NMI of the same clustering against shuffled labels.
"""

from __future__ import annotations

import argparse
import csv
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def one_hot(values: Sequence[str]) -> np.ndarray:
    names = sorted(set(values))
    return np.array([[float(v == n) for n in names] for v in values])


def kmeans_nmi(features: np.ndarray, labels: Sequence[str], permutations: int = 200,
               seed: int = 0) -> tuple[float, float]:
    """(NMI of KMeans clusters of features vs labels, mean NMI vs shuffled labels)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    features = np.asarray(features, dtype=np.float64).reshape(len(labels), -1)
    spread = features.std(axis=0)
    features = (features - features.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    k = len(set(labels))
    if len(np.unique(features, axis=0)) < 2:
        clusters = np.zeros(len(labels), dtype=int)  # one value for every song: nothing to cluster
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fewer distinct points than k is the answer, not a fault
            clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(features)
    rng = np.random.default_rng(seed)
    chance = [normalized_mutual_info_score(rng.permutation(labels), clusters) for _ in range(permutations)]
    return float(normalized_mutual_info_score(labels, clusters)), float(np.mean(chance))


def song_features(csv_path: Path) -> tuple[list[dict[str, str]], dict[str, np.ndarray]]:
    import soundfile as sf

    root = csv_path.parent
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    infos = [sf.info(str(root / r["path"])) for r in rows]
    levels = []
    for row in rows:
        audio, _ = sf.read(str(root / row["path"]), dtype="float32")
        levels.append(20 * np.log10(max(float(np.sqrt(np.mean(np.square(audio)))), 1e-9)))
    features = {
        "duration": np.array([i.duration for i in infos]),
        "format/codec one-hot": one_hot([f"{i.format}/{i.subtype}" for i in infos]),
        "sample rate": np.array([float(i.samplerate) for i in infos]),
        "channels": np.array([float(i.channels) for i in infos]),
        "RMS level (dBFS)": np.array(levels),
    }
    provenance = root / "PROVENANCE.csv"
    if provenance.is_file():
        source = {r["song_id"]: r for r in csv.DictReader(provenance.open(encoding="utf-8"))}
        features["source sample rate (not in the files)"] = np.array(
            [float(source[r["song_id"]]["source_sample_rate"]) for r in rows])
        kinds = [source[r["song_id"]] for r in rows]
        features["source codec+channels (not in the files)"] = one_hot(
            [f"{k['source_codec']}/{k['source_channels']}" for k in kinds])
    return rows, features


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("metadata", type=Path, help="the corpus' metadata.csv")
    p.add_argument("--permutations", type=int, default=200, help="shuffles for the chance level")
    args = p.parse_args(argv)
    rows, features = song_features(args.metadata)
    print(f"{len(rows)} songs; KMeans (k = classes) NMI vs labels, chance = mean NMI vs shuffled labels")
    print(f"{'feature':44s} {'genre':>7s} {'chance':>7s} {'language':>9s} {'chance':>7s}")
    for name, values in features.items():
        scores = [kmeans_nmi(values, [r[task] for r in rows], args.permutations)
                  for task in ("genre", "language")]
        print(f"{name:44s} {scores[0][0]:7.3f} {scores[0][1]:7.3f} {scores[1][0]:9.3f} {scores[1][1]:7.3f}")


if __name__ == "__main__":
    main()
