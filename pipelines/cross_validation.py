"""K-fold cross-validation of one architecture: song-disjoint folds, one nested training run (and
model) each, under a parent run with the mean and spread of the test scores.

    mlflow run . -P model=conv_vae -P eval.folds=5 --env-manager local
    python -m pipelines.train --model conv_vae --eval.folds 5 [--resume PARENT_RUN_ID]
"""

from __future__ import annotations

import copy

from components.config import DEFAULTS_FILE, experiment_file
from components.evaluation.cross_validation import fold_summary, summary_lines
from components.settings import Experiment
from components.tracking import mlflow_runs as tracking
from pipelines.training_run import train


def cross_validate(config: Experiment, resume_run_id: str | None = None) -> str:
    """eval.folds song-disjoint folds, one nested run (and model) each, under one parent run that
    logs the mean and spread of the test scores. Resuming the parent skips finished folds and
    resumes an interrupted one from its checkpoint."""
    name, folds = config.model.name, config.eval.folds
    with tracking.run(config.tracking, resume_run_id=resume_run_id, run_name=f"{name}-cv{folds}",
                      tags={"cv.folds": str(folds)}):
        parent = tracking.active_run_id()
        tracking.log_config(config, [DEFAULTS_FILE, experiment_file(name)])
        earlier = tracking.child_runs(parent, "cv.fold")
        results = []
        for fold in range(folds):
            fold_config = copy.deepcopy(config)
            fold_config.data.fold = fold
            done = earlier.get(str(fold))
            if done is not None and done.info.status == "FINISHED":
                print(f"fold {fold}: finished in run {done.info.run_id}, reused")
                results.append(done.data.metrics)
                continue
            with tracking.run(fold_config.tracking, resume_run_id=done.info.run_id if done else None,
                              run_name=f"{name}-fold{fold}", nested=True,
                              tags={"cv.fold": str(fold), "cv.parent": parent}):
                results.append(train(fold_config).scores)
        summary = fold_summary(results)
        tracking.log_metrics(summary)
    print("\n".join([f"cross-validation run {parent} finished ({folds} folds)", *summary_lines(summary)]))
    return parent
