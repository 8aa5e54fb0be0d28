"""The side-by-side table of architectures: one row per model's latest finished run, test scores.

Scores are the test split's (never used for selection), each beside its chance level, p-value
and interval; a score whose p-value is not below eval.alpha is marked `chance`, whatever its size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from components.vocabulary import REPORT, TASKS, metric

# The report's targets, under the column names of result_cells.
TARGETS = {"NMI": 0.3, "ARI": 0.2, "silhouette (labels)": 0.3}


@dataclass
class RunSummary:
    """What the table needs from one training run (filled by components.tracking.mlflow_runs)."""

    model: str
    run_id: str
    metrics: dict[str, float]
    tags: dict[str, str]
    params: dict[str, str]
    minutes: float
    peak_memory_mb: float | None
    start_time: int  # ms since epoch


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def result_cells(metrics: Mapping[str, float | str], task: str, variant: str | None = None,
                 conditioned: bool = False) -> dict[str, object]:
    """The test result of one task as table cells: NMI with its interval, the chance level and
    p-value beside it, the verdict, AMI, ARI and the true labels' silhouette. A label-conditioned
    score is not shown as a result."""
    def value(score: str) -> float | None:
        found = metrics.get(metric(REPORT, task, score, variant))
        return None if found is None else float(found)

    if conditioned:
        return {f"{task} NMI": "label-conditioned: not a result"}
    low, high, beats = value("nmi_ci_low"), value("nmi_ci_high"), value("beats_chance")
    mean, p95 = value("nmi_chance_mean"), value("nmi_chance_p95")
    verdict = None if beats is None else ("beats chance" if beats else "chance")
    untrained = metrics.get(metric(REPORT, task, "nmi", "untrained"))
    return {f"{task} NMI": _rounded(value("nmi")),
            f"{task} NMI 95% CI": None if low is None else f"[{low:.2f}, {high:.2f}]",
            f"{task} chance (mean / p95)": None if mean is None else f"{mean:.2f} / {p95:.2f}",
            f"{task} p": _rounded(value("nmi_p_value")), f"{task} verdict": verdict,
            f"{task} NMI untrained": None if untrained is None or variant else _rounded(float(untrained)),
            f"{task} AMI": _rounded(value("ami")), f"{task} ARI": _rounded(value("ari")),
            f"{task} silhouette (labels)": _rounded(value("silhouette_labels"))}


def comparison_table(summaries: list[RunSummary]) -> pd.DataFrame:
    """Rows: each model's test scores (chance level, interval), then the MFCC baseline under the
    same protocol (from the newest run) and the report's targets."""
    rows = []
    for summary in sorted(summaries, key=lambda s: s.model):
        row: dict[str, object] = {"model": summary.model, "run": summary.run_id[:8]}
        for task in TASKS:
            row |= result_cells(summary.metrics, task,
                                conditioned=summary.tags.get("label_conditioned") == task)
        row |= {"parameters": int(summary.params.get("model.parameter_count", 0)) or None,
                "epochs": int(summary.metrics.get("train/epochs_run", 0)) or None,
                "minutes": round(summary.minutes, 1),
                "peak memory MB": None if summary.peak_memory_mb is None else round(summary.peak_memory_mb)}
        rows.append(row)
    if summaries:
        newest = max(summaries, key=lambda s: s.start_time)
        baseline: dict[str, object] = {"model": "MFCC statistics", "run": newest.run_id[:8]}
        for task in TASKS:
            baseline |= result_cells(newest.metrics, task, variant="mfcc")
        rows.append(baseline)
    target = {"model": "report's targets"}
    for task in TASKS:
        target |= {f"{task} {score}": f"> {value}" for score, value in TARGETS.items()}
    rows.append(target)
    return pd.DataFrame(rows)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return f"{int(value):,}"  # counts that pandas turned into floats beside empty cells
    return str(value)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub table without extra dependencies (pandas' to_markdown needs tabulate)."""
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "---|" * len(table.columns)
    lines = [header, rule]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"
