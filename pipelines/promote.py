"""Register a training run's model in the MLflow Model Registry and move `champion` if it wins.

    mlflow run . -e promote -P run_id=<RUN_ID> -P task=genre --env-manager local
    python -m pipelines.promote --run-id RUN_ID --task genre|language|both [--study NAME]
    python -m pipelines.promote --rollback conv_vae      # champion back to previous_champion
"""

from __future__ import annotations

import argparse

from components.tracking import registry
from pipelines.arguments import run_cli


def main(argv: list[str] | None = None) -> registry.Promotion:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run-id", default="", help="the training run whose logged model to register")
    # Validated by the registry, not argparse `choices`, so a bad task ends like every input error.
    p.add_argument("--task", default="genre", help="what the model is judged on: genre (genre/nmi), "
                   "language (language/nmi) or both (their mean)")
    p.add_argument("--study", default="none", help="Optuna study to record on the version "
                   "(default: the run's optuna.study_name tag, if any)")
    p.add_argument("--rollback", default="", metavar="MODEL",
                   help="instead of promoting: move MODEL's champion back to its previous_champion")
    args = p.parse_args(argv)
    if args.rollback:
        outcome = registry.rollback(args.rollback)
    elif args.run_id:
        # MLproject passes "none" for no study: an empty string param would vanish from the command.
        study = None if args.study.strip() in ("", "none") else args.study
        outcome = registry.promote(args.run_id, args.task, study)
    else:
        raise registry.RegistryError("pass --run-id RUN_ID (a training run) or --rollback MODEL")
    verdict = "champion" if outcome.promoted else "not champion"
    print(f"{outcome.name} version {outcome.version}: {verdict}. {outcome.reason}")
    return outcome


if __name__ == "__main__":
    run_cli(main)
