"""Experiment configs: defaults.yaml + experiments/<model>.yaml + strict overrides."""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from components.config_rules import check_settings
from components.dotted_keys import flatten, set_dotted
from components.error_summary import first_line

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"
DEFAULTS_FILE = EXPERIMENTS_DIR / "defaults.yaml"
PRESETS_DIR = EXPERIMENTS_DIR / "presets"


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which key and why."""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def _unknown_key_error(key: str, known: list[str], source: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=3)
    section, _, leaf = key.rpartition(".")
    initials = "".join(word[:1] for word in leaf.split("_"))  # learning_rate -> lr
    close += [k for k in known if k.rpartition(".")[0] == section and k.rpartition(".")[2] == initials
              and k not in close]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(
        f"{source}: unknown config key '{key}'.{hint} Valid keys are listed in {DEFAULTS_FILE.name}."
    )


# Keys whose default is a word (e.g. auto) that also take a number of this type.
ALSO_ACCEPTS: dict[str, type] = {"train.checkpoint_every": int}


def _check_type(key: str, default: Any, value: Any, source: str) -> Any:
    """Accept value only if it has the default's type (ints pass for floats; null defaults take
    anything; ALSO_ACCEPTS names the second type of a few keys)."""
    if default is None or value is None:
        return value
    if isinstance(value, ALSO_ACCEPTS.get(key, ())) and not isinstance(value, bool):
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(
            f"{source}: '{key}' must be {type(default).__name__} like the default {default!r}"
            f"{f' or {ALSO_ACCEPTS[key].__name__}' if key in ALSO_ACCEPTS else ''}, "
            f"got {value!r} ({type(value).__name__})"
        )
    return value


def _merge(base: dict[str, Any], changes: dict[str, Any], source: str) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    known = flatten(base)
    for key, value in flatten(changes).items():
        if key not in known:
            raise _unknown_key_error(key, list(known), source)
        set_dotted(merged, key, _check_type(key, known[key], value, source))
    return merged


def parse_value(raw: str) -> Any:
    """A command-line value as YAML, except that 1e-4 is a float (YAML 1.1 reads it as a string)."""
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".e") else int(value)
        except ValueError:
            pass
    return value


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """['train.lr=1e-3', 'model.hidden_dims=[8,16]'] -> nested dict, values parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value, e.g. train.epochs=10")
        key, raw = item.split("=", 1)
        try:
            value = parse_value(raw)
        except yaml.YAMLError as err:  # also python/object tags: safe_load builds plain values only
            raise ConfigError(f"override '{key}': {raw!r} is not a plain YAML value ({first_line(err)}); "
                              f"write a number, string, list or mapping") from err
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def defaults() -> dict[str, Any]:
    """experiments/defaults.yaml as a dict."""
    return _read_yaml(DEFAULTS_FILE)


def experiment_file(model_name: str) -> Path:
    return EXPERIMENTS_DIR / f"{model_name}.yaml"


def presets() -> list[str]:
    """Names of the presets in experiments/presets/."""
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def _apply_presets(config: dict[str, Any], names: Any) -> dict[str, Any]:
    """Merge experiments/presets/<name>.yaml for each name of `preset` ('cpu' or 'report,cpu'), in
    order, with the same key and type checks as any override."""
    if names is None:
        return config
    if not isinstance(names, str) or not names.strip():
        raise ConfigError(f"preset={names!r} must be a preset name or a comma-separated list of "
                          f"them; presets: {', '.join(presets())}")
    for name in (part.strip() for part in names.split(",")):
        path = PRESETS_DIR / f"{name}.yaml"
        if not path.exists():
            close = difflib.get_close_matches(name, presets(), n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise ConfigError(f"preset '{name}' does not exist ({path.relative_to(PROJECT_ROOT)}).{hint} "
                              f"Presets: {', '.join(presets())}")
        config = _merge(config, _read_yaml(path), str(path.relative_to(PROJECT_ROOT)))
    return config


def _shown(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path)


def model_defaults(model_name: str) -> dict[str, Any]:
    """experiments/defaults.yaml with the architecture's own model.* settings (and their
    defaults) added: the keys its experiment file, presets and overrides may set."""
    from components.models import MODELS  # late: it imports torch, which config's light users never need

    config = _read_yaml(DEFAULTS_FILE)
    config["model"] |= copy.deepcopy(MODELS[model_name].own_settings)
    return config


def load_config(model_name: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Resolve defaults <- experiments/<model_name>.yaml <- presets <- overrides, rejecting unknown
    keys and types. The `preset` key (e.g. the override preset=report) names files of
    experiments/presets/ applied before the other overrides, whatever their order."""
    from components.models import MODELS  # late: it imports torch, which config's light users never need

    if model_name not in MODELS:
        raise ConfigError(
            f"unknown model '{model_name}'. Valid models: {', '.join(sorted(MODELS))}"
        )
    base = config = model_defaults(model_name)  # _merge copies: base stays the defaults
    path = experiment_file(model_name)
    if not path.exists():
        raise ConfigError(f"{path} is missing: every model in MODELS needs an experiment file")
    config = _merge(config, _read_yaml(path), _shown(path))
    changes = parse_overrides(overrides or [])
    config = _merge(config, {"preset": changes.pop("preset", config["preset"])}, "override")
    config = _apply_presets(config, config["preset"])
    config = _merge(config, changes, "override")
    if config["model"]["name"] != model_name:
        raise ConfigError(f"{path}: model.name must be '{model_name}' (the file stem)")
    check_protocol(config, base)
    return config


def with_overrides(config: dict[str, Any], overrides: list[str], allowed: tuple[str, ...]) -> dict[str, Any]:
    """A resolved config (e.g. a logged run's) with key=value overrides, checked like load_config's;
    only keys under the `allowed` prefixes may change (a model's feature and model settings stay)."""
    changes = parse_overrides(overrides)
    refused = [key for key in flatten(changes) if not key.startswith(allowed)]
    if refused:
        raise ConfigError(f"override {', '.join(refused)}: only {', '.join(allowed)} settings can "
                          f"change here; the rest are the model's own")
    config = _merge(config, changes, "override")
    check_protocol(config)
    return config


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}")


def _in_range(key: str, value: float, low: float, high: float, fix: str) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key}={value!r} must be in [{low}, {high}]; {fix}")


def check_protocol(config: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
    """Every key's range, choice and null rule (components.config_rules), checked when the config
    is loaded: a typo fails here, before any data is read or any epoch trained. defaults: the
    model's (model_defaults), when the caller has read them already."""
    from components.models import MODELS  # late: it imports torch, which config's light users never need

    name = config["model"]["name"]
    check_settings(config, defaults or model_defaults(name), MODELS[name].own_rules, ConfigError)


def config_hash(config: dict[str, Any]) -> str:
    """Stable short hash of a resolved config, logged with every run."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
