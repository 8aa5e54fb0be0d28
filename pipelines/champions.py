"""List every registered model with its champion version, the task it won on and its scores.

    mlflow run . -e champions --env-manager local
    python -m pipelines.champions
"""

from __future__ import annotations

import argparse

import pandas as pd

from components import registry
from components.comparison import SCORES, to_markdown
from components.dataset import TASKS


def champions_table(listed: list[registry.Champion]) -> pd.DataFrame:
    rows = []
    for champion in listed:
        row: dict[str, object] = {"model": champion.name, "champion": champion.version,
                                  "task": champion.task}
        for label in TASKS:
            for score in SCORES:
                value = champion.metrics.get(f"{label}/{score}")
                row[f"{label} {score}"] = None if value is None else round(value, 3)
        # A CVAE's score on its own label is not unsupervised: say which one, as compare does.
        row |= {"label-conditioned": champion.label_conditioned, "run": champion.run_id,
                "study": champion.study, "previous_champion": champion.previous_champion}
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
    main()
