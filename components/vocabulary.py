"""The project's shared vocabularies: tasks, splits and score names a run's results are read by
(components.evaluation.scoring writes them), and the choices config keys take. Imports nothing,
so the config checks, the registry and the tables need no torch."""

from __future__ import annotations

TASKS = ("genre", "language")  # what songs are grouped by
SELECT, REPORT = "val", "test"  # val scores select (objective, promotion); test scores report
PROMOTION_TASKS = (*TASKS, "both")  # what a study optimises and promotion judges
# Each headline score beside its chance level and interval.
HEADLINE = ("nmi", "ami", "ari", "silhouette_labels", "nmi_chance_mean", "nmi_chance_p95",
            "nmi_p_value", "beats_chance", "nmi_ci_low", "nmi_ci_high")


# Choices of config keys (the Literal types of components.settings).
METHODS = ("kmeans", "agglomerative", "gmm")  # clustering of the scores
UNITS = ("window", "song")  # what one point of a scored clustering is
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "none")
FUSIONS = ("early", "late", "attention")
AUDIO_ENCODERS = ("conv", "basic")
LYRICS_ENCODERS = ("tfidf_svd", "transformer")
AUTO = "auto"  # a setting chosen by the device and measurements (each key's comment says how)
CHECKPOINT_WRITES = (AUTO, "background", "inline")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
AMP_DTYPES = (AUTO, "bfloat16", "float16")


def metric(split: str, task: str, score: str, variant: str | None = None) -> str:
    """'test/genre/nmi', or with a variant (mfcc, own_clusters, window, a method) 'test/genre/mfcc/nmi'."""
    return f"{split}/{task}/{variant}/{score}" if variant else f"{split}/{task}/{score}"
