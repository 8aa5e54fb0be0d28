"""The private attributes of Optuna and MLflow this project needs, each behind one function, so a
library upgrade that moves one fails tests/test_library_internals.py, not a tuning run.

- A journal-file study has no heartbeat: failing a dead local worker's trial needs the study's
  storage and the trial's storage id (Optuna keeps both private).
- When the tracking store stops answering, the fluent API's active run cannot be ended through
  the store; the run is dropped from MLflow's own stack instead.
"""

from __future__ import annotations

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial


def study_storage(study: optuna.Study) -> BaseStorage:
    return study._storage


def trial_id(trial: FrozenTrial) -> int:
    """The storage's id of a trial (not its number within the study)."""
    return trial._trial_id


def forget_active_runs() -> None:
    """Drop the fluent API's active runs without telling the (unreachable) store."""
    from mlflow.tracking import fluent

    fluent._active_run_stack.get().clear()
