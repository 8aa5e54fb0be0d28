"""The baseline a researcher tries first: MFCC statistics per window + KMeans, from the same cache."""

from __future__ import annotations

import librosa
import numpy as np

from components.aggregation import to_unit
from components.clustering import evaluate_task
from components.dataset import TASKS
from components.feature_cache import FeatureCache


def mfcc_statistics(cache: FeatureCache, rows: np.ndarray, n_mfcc: int = 20) -> np.ndarray:
    """[len(rows), 2 * n_mfcc]: mean and std over time of the MFCCs of each cached log-mel window."""
    from sklearn.preprocessing import StandardScaler  # after training, not before its first step

    features = []
    for row in rows:
        mfcc = librosa.feature.mfcc(S=cache.read([row])[0].astype(np.float32), n_mfcc=n_mfcc)
        features.append(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]))
    return StandardScaler().fit_transform(np.stack(features))


def baseline_scores(cache: FeatureCache, split: str = "val", seed: int = 0,
                    unit: str = "window") -> dict[str, float | str]:
    """KMeans on MFCC statistics of one split, scored like the models (same unit), under
    'baseline/<task>/...'."""
    rows = cache.rows[cache.rows.split == split]
    features, labels, _ = to_unit(unit, mfcc_statistics(cache, rows.row.to_numpy()),
                                  {task: rows[task].to_numpy() for task in TASKS}, rows.song_id.to_numpy())
    results: dict[str, float | str] = {}
    for task in TASKS:
        scores = evaluate_task(features, labels[task], task, methods=["kmeans"], seed=seed)
        results |= {f"baseline/{k}": v for k, v in scores.items() if "_" not in k.split("/")[1]}
    return results
