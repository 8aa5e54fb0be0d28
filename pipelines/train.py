"""Train one architecture and log everything to one MLflow run.

    mlflow run . -P model=conv_vae --env-manager local          # train
    mlflow run . -P model=conv_vae -P eval.folds=5 ...          # 5-fold cross-validation
    mlflow run . --run-id <RUN_ID> -P model=conv_vae ...        # resume an interrupted run
    python -m pipelines.train --model conv_vae [--resume RUN_ID] [--train.epochs 10]
"""

from __future__ import annotations

from pipelines.arguments import parser, resolve, run_cli


def main(argv: list[str] | None = None) -> str:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--resume", default="", help="MLflow run id whose checkpoint to continue (with "
                   "eval.folds > 1: the cross-validation's parent run)")
    args, extra = p.parse_known_args(argv)
    config = resolve(args, extra)
    # Imported once the config is checked: a typo fails before torch and MLflow load.
    from components.tracking import mlflow_runs as tracking
    from pipelines.cross_validation import cross_validate
    from pipelines.training_run import train

    if config.eval.folds > 1:
        return cross_validate(config, args.resume or None)
    with tracking.run(config.tracking, resume_run_id=args.resume or None, run_name=config.model.name):
        return train(config).run_id


if __name__ == "__main__":
    run_cli(main)
