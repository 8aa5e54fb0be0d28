"""The names a run's clustering result is read by: the split that selects, the split that reports,
and the scores that stand in tables, version tags and the printed line (components.evaluation
writes them). Imports nothing heavy, so the registry and tables need no torch."""

from __future__ import annotations

TASKS = ("genre", "language")  # what songs are grouped by
SELECT, REPORT = "val", "test"  # val scores select (objective, promotion); test scores report
# Each headline score beside its chance level and interval.
HEADLINE = ("nmi", "ami", "ari", "silhouette_labels", "nmi_chance_mean", "nmi_chance_p95",
            "nmi_p_value", "beats_chance", "nmi_ci_low", "nmi_ci_high")


def metric(split: str, task: str, score: str, variant: str | None = None) -> str:
    """'test/genre/nmi', or with a variant (mfcc, own_clusters, window, a method) 'test/genre/mfcc/nmi'."""
    return f"{split}/{task}/{variant}/{score}" if variant else f"{split}/{task}/{score}"
