"""The private Optuna and MLflow attributes behind components/tracking/library_internals.py still
exist and mean what the project uses them for: this fails first when a library upgrade moves one."""

from __future__ import annotations

import mlflow
import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from components.tracking.library_internals import forget_active_runs, study_storage, trial_id


def test_a_study_exposes_its_storage_and_a_trial_its_storage_id():
    study = optuna.create_study()
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    storage = study_storage(study)
    assert isinstance(storage, BaseStorage)
    for trial in study.trials:
        assert storage.get_trial(trial_id(trial)).number == trial.number
    running = study.ask()
    storage.set_trial_state_values(trial_id(study.trials[-1]), state=TrialState.FAIL)
    assert study.trials[running.number].state == TrialState.FAIL


def test_forgetting_the_active_run_leaves_no_active_run(mlflow_store):
    mlflow.start_run()
    assert mlflow.active_run() is not None
    forget_active_runs()
    assert mlflow.active_run() is None
