"""The side-by-side table of architectures: one row per model's latest finished run."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from components.dataset import TASKS

TARGETS = {"nmi": 0.3, "ari": 0.2, "silhouette": 0.3}
SCORES = ("nmi", "ari", "silhouette")


@dataclass
class RunSummary:
    """What the table needs from one training run (filled by components.tracking)."""

    model: str
    run_id: str
    metrics: dict[str, float]
    tags: dict[str, str]
    params: dict[str, str]
    minutes: float
    peak_memory_mb: float | None
    start_time: int  # ms since epoch


def _score_cells(summary: RunSummary, task: str) -> dict[str, object]:
    conditioned = summary.tags.get("label_conditioned") == task
    cells: dict[str, object] = {}
    for score in SCORES:
        value = summary.metrics.get(f"{task}/{score}")
        cells[f"{task} {score}"] = None if value is None else round(value, 3)
    method = summary.tags.get(f"{task}/best_method", "")
    # A CVAE's score on its own condition is not unsupervised: marked in every comparison.
    cells[f"{task} method"] = f"{method} (label-conditioned)" if conditioned else method
    return cells


def comparison_table(summaries: list[RunSummary]) -> pd.DataFrame:
    """Rows: each model, then the MFCC baseline (from the newest run) and the report's targets."""
    rows = []
    for summary in sorted(summaries, key=lambda s: s.model):
        row: dict[str, object] = {"model": summary.model, "run": summary.run_id[:8]}
        for task in TASKS:
            row |= _score_cells(summary, task)
        row |= {"parameters": int(summary.params.get("model.parameter_count", 0)) or None,
                "epochs": int(summary.metrics.get("train/epochs_run", 0)) or None,
                "minutes": round(summary.minutes, 1),
                "peak memory MB": None if summary.peak_memory_mb is None else round(summary.peak_memory_mb)}
        rows.append(row)
    if summaries:
        newest = max(summaries, key=lambda s: s.start_time)
        baseline = {"model": "MFCC stats + KMeans", "run": newest.run_id[:8]}
        for task in TASKS:
            for score in SCORES:
                value = newest.metrics.get(f"baseline/{task}/{score}")
                baseline[f"{task} {score}"] = None if value is None else round(value, 3)
            baseline[f"{task} method"] = "kmeans"
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
