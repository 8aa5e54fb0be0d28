"""Where a run's checkpoints live, and the config a resumed run continues with."""

from __future__ import annotations

import sys
from pathlib import Path

from components.config import PROJECT_ROOT, ConfigError, experiment, flatten, set_dotted
from components.settings import Experiment
from components.training import checkpoint


def checkpoint_dir(config: Experiment, run_id: str) -> Path:
    root = Path(config.train.checkpoint_dir)
    return (root if root.is_absolute() else PROJECT_ROOT / root) / run_id


# Keys that change how a model trains, added after runs were checkpointed without them: a run
# from before resumes with the value that trains as it did.
ADDED_KEYS = {"train.lr_fan_in_reference": None, "train.precise_bn_batches": 0}


def config_for_resume(config: Experiment, directory: Path) -> Experiment:
    """A resumed run keeps the config it started with; a different one would be another run. Keys
    its checkpoint predates are filled in (ADDED_KEYS, else today's value), keys no longer read
    (another architecture's settings, from before each owned its own) dropped; both are named."""
    saved = checkpoint.load(directory / checkpoint.LAST)["config"]
    now, then = flatten(config.to_dict()), flatten(saved)
    changed = {k: (v, now[k]) for k, v in then.items() if k in now and now[k] != v}
    if changed:
        raise ConfigError(f"resuming {directory.name} with a different config: {changed}. "
                          f"Resume with the original settings, or start a new run.")
    added = {k: ADDED_KEYS.get(k, v) for k, v in now.items() if k not in then}
    dropped = sorted(k for k in then if k not in now)
    for key, value in added.items():
        set_dotted(saved, key, value)
    for key in dropped:
        section, _, leaf = key.rpartition(".")
        del (saved[section] if section else saved)[leaf]
    if added or dropped:
        print(f"note: {directory / checkpoint.LAST} predates the settings {added} (the run resumes with "
              f"these values, as it trained) and holds {dropped}, no longer read", file=sys.stderr)
    return experiment(saved)
