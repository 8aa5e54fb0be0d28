"""K-fold cross-validation over songs: the summary of the folds' test scores.

A real corpus of ~180 songs gives one split 36 test songs: a noisy number. eval.folds: K trains
K models on song-disjoint folds (components.data.splits), each fold the test split once, and reports
each headline test score's mean and spread over the folds, and how many folds beat chance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from components.vocabulary import REPORT

SUMMARISED = ("nmi", "ami", "ari", "silhouette_labels")


def _summarised(name: str) -> bool:
    parts = name.split("/")
    return (parts[0] == REPORT and parts[-1] in (*SUMMARISED, "beats_chance")
            and (len(parts) == 3 or (len(parts) == 4 and parts[2] == "mfcc")))


def fold_summary(folds: Sequence[Mapping[str, float | str]]) -> dict[str, float]:
    """'<test metric>_mean' / '_std' (sample std over folds) of each headline test score (the
    model's and MFCC's), '<task>/folds_beating_chance' counts; only metrics every fold has."""
    names = sorted(set.intersection(*(set(k for k in f if _summarised(k)) for f in folds))) if folds else []
    summary: dict[str, float] = {"cv/folds": float(len(folds))}
    for name in names:
        values = np.array([float(f[name]) for f in folds])
        if name.endswith("/beats_chance"):
            summary[name.replace("/beats_chance", "/folds_beating_chance")] = float(values.sum())
            continue
        summary[f"{name}_mean"] = float(values.mean())
        summary[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return summary


def summary_lines(summary: Mapping[str, float]) -> list[str]:
    """'test genre NMI 0.41 +- 0.08 over 5 folds (3 beat chance); MFCC 0.30 +- 0.05' per task."""
    folds = int(summary["cv/folds"])
    lines = []
    tasks = sorted({k.split("/")[1] for k in summary if k.startswith(f"{REPORT}/")})
    for task in tasks:
        parts = []
        for who, prefix in (("model", f"{REPORT}/{task}"), ("MFCC", f"{REPORT}/{task}/mfcc")):
            if f"{prefix}/nmi_mean" not in summary:
                continue
            text = f"{who} NMI {summary[f'{prefix}/nmi_mean']:.3f} +- {summary[f'{prefix}/nmi_std']:.3f}"
            beating = summary.get(f"{prefix}/folds_beating_chance")
            if beating is not None:
                text += f" ({int(beating)} of {folds} folds beat chance)"
            parts.append(text)
        if parts:
            lines.append(f"{REPORT} {task} over {folds} folds: " + "; ".join(parts))
    return lines
