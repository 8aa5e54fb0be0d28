"""Tune one architecture with an Optuna study; every trial is a nested MLflow run.

    mlflow run . -e tune -P model=basic_vae -P n_trials=20 --env-manager local
    python -m pipelines.tune --model basic_vae --tune.n_trials 20 --tune.task both
    python -m pipelines.tune --model conv_vae --tune.workers 4 --tune.gpus_per_trial 1   # Ray tasks
    optuna-dashboard optuna.log

Run it again (here or on another machine, against the same tune.storage) to resume the study or
add a parallel worker; pipelines.tuning_study says how runs and trials are linked.
"""

from __future__ import annotations

import sys

from pipelines.arguments import overrides_of, parser, resolve, run_cli


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    args, extra = parser(__doc__.splitlines()[0]).parse_known_args(argv)
    config = resolve(args, extra)
    from pipelines.tuning_study import tune  # once the config is checked: a typo fails before torch loads

    return tune(args.model, overrides_of(args, extra), config, argv)


if __name__ == "__main__":
    run_cli(main)
