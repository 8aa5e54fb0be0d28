"""Optuna search spaces: search_spaces/<model>.yaml -> validated parameters -> trial.suggest_* calls.

Each entry names a dotted config key and its distribution:

    train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
    model.n_clusters: {type: int, low: 6, high: 20}
    model.fusion: {type: categorical, choices: [early, late, attention]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from components.config import PROJECT_ROOT, ConfigError, flatten, load_config

SEARCH_SPACES_DIR = PROJECT_ROOT / "search_spaces"
FIELDS = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
          "categorical": {"type", "choices"}}


@dataclass(frozen=True)
class Parameter:
    key: str
    kind: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log,
                                     step=int(self.step or 1))
        return trial.suggest_categorical(self.key, list(self.choices))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parameter(key: str, spec: Any, default: Any, where: str) -> Parameter:
    if not isinstance(spec, dict) or spec.get("type") not in FIELDS:
        raise ConfigError(f"{where}: '{key}' needs a mapping with type float, int or categorical")
    kind = spec["type"]
    extra = set(spec) - FIELDS[kind]
    if extra:
        raise ConfigError(f"{where}: '{key}' has unknown field(s) {sorted(extra)} for type {kind}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: '{key}' needs a non-empty list of choices")
        if default is not None and not all(isinstance(c, type(default)) or (_number(c) and _number(default))
                                           for c in choices):
            raise ConfigError(f"{where}: choices of '{key}' must have the type of its default {default!r}")
        return Parameter(key, kind, choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    if not (_number(low) and _number(high)):
        raise ConfigError(f"{where}: '{key}' needs numeric low and high")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"{where}: '{key}' is int but low/high are not whole numbers")
    if low >= high:
        raise ConfigError(f"{where}: '{key}' has an inverted or empty range: low {low} >= high {high}; "
                          f"swap them")
    log = spec.get("log", False)
    if not isinstance(log, bool) or (log and low <= 0):
        raise ConfigError(f"{where}: '{key}' log must be true/false and needs low > 0")
    if default is not None and not _number(default):
        raise ConfigError(f"{where}: '{key}' is numeric here but its default {default!r} is not")
    if kind == "int" and isinstance(default, float):
        raise ConfigError(f"{where}: '{key}' is a float in the config; use type: float")
    return Parameter(key, kind, float(low), float(high), log, spec.get("step"))


def load_search_space(model: str, path: Path | None = None) -> list[Parameter]:
    """Validate search_spaces/<model>.yaml against the model's resolved config."""
    path = Path(path) if path else SEARCH_SPACES_DIR / f"{model}.yaml"
    where = str(path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path)
    if not path.exists():
        raise ConfigError(f"{where} is missing: every model needs a search space")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML ({err})") from err
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: expected a mapping of dotted config keys to distributions")
    known = flatten(load_config(model).to_dict())
    parameters = []
    for key, spec in raw.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown config key '{key}'; search keys must exist in "
                              f"experiments/defaults.yaml")
        parameters.append(_parameter(key, spec, known[key], where))
    return parameters


def suggest_values(trial: optuna.Trial, parameters: list[Parameter]) -> dict[str, Any]:
    """One trial's values by dotted key ({'train.lr': 0.0003}), typed, for load_config(values=...)."""
    return {parameter.key: parameter.suggest(trial) for parameter in parameters}
