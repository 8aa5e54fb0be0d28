"""The baseline a researcher tries first: MFCC statistics per window, from the same cache.

components.evaluation.scoring scores them under the models' protocol (split, unit, method, chance level)
as <split>/<task>/mfcc/...
"""

from __future__ import annotations

import librosa
import numpy as np

from components.data.feature_cache import FeatureCache


def mfcc_statistics(cache: FeatureCache, rows: np.ndarray, n_mfcc: int = 20) -> np.ndarray:
    """[len(rows), 2 * n_mfcc]: mean and std over time of the MFCCs of each cached log-mel window."""
    from sklearn.preprocessing import StandardScaler  # after training, not before its first step

    features = []
    for row in rows:
        mfcc = librosa.feature.mfcc(S=cache.read([row])[0].astype(np.float32), n_mfcc=n_mfcc)
        features.append(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]))
    return StandardScaler().fit_transform(np.stack(features))
