"""Compare the latest finished run of each architecture in one table (markdown + CSV artifacts).

    mlflow run . -e compare --env-manager local
    python -m pipelines.compare [--experiment music-vae]
"""

from __future__ import annotations

import argparse

from components.config import defaults
from components.evaluation.comparison import comparison_table, to_markdown
from components.settings import TrackingSettings
from components.tracking import mlflow_runs as tracking
from pipelines.arguments import run_cli


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default=defaults()["tracking"]["experiment"],
                   help="MLflow experiment to compare (ignored under `mlflow run`, which picks it)")
    args = p.parse_args(argv)
    summaries = tracking.latest_training_runs(args.experiment)
    if not summaries:
        raise SystemExit(f"no finished training runs in experiment '{args.experiment}': "
                         f"train one first, e.g. mlflow run . -P model=conv_vae --env-manager local")
    table = comparison_table(summaries)
    markdown = to_markdown(table)
    with tracking.run(TrackingSettings(args.experiment, system_metrics=False), run_name="compare"):
        tracking.log_text(markdown, "comparison/comparison.md")
        tracking.log_table(table, "comparison/comparison.csv")
        run_id = tracking.active_run_id()
    print(markdown)
    return run_id


if __name__ == "__main__":
    run_cli(main)
