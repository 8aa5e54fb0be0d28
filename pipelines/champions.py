"""List every registered model with its champion version, the task it won on and its scores.

    mlflow run . -e champions --env-manager local
    python -m pipelines.champions
"""

from __future__ import annotations

import argparse

import pandas as pd

from components.evaluation.comparison import TASKS, result_cells, to_markdown
from components.tracking import registry
from pipelines.arguments import run_cli


def champions_table(listed: list[registry.Champion]) -> pd.DataFrame:
    """One row per registered model: its champion's test scores (chance level, interval) as
    tagged on the version; the champion was chosen on val scores."""
    rows = []
    for champion in listed:
        row: dict[str, object] = {"model": champion.name, "champion": champion.version,
                                  "task": champion.task}
        for label in TASKS:
            # A CVAE's score on its own label is not unsupervised: said so, as compare does.
            row |= result_cells(champion.metrics, label,
                                conditioned=champion.label_conditioned == label)
        row |= {"run": champion.run_id, "study": champion.study,
                "previous_champion": champion.previous_champion}
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> str:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    listed = registry.champions()
    if not listed:
        text = ("no registered models: promote a training run first, e.g. "
                "python -m pipelines.promote --run-id RUN_ID --task genre\n")
    else:
        text = to_markdown(champions_table(listed))
    print(text, end="")
    return text


if __name__ == "__main__":
    run_cli(main)
