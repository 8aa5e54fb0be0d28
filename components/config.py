"""Experiment configs: defaults.yaml + experiments/<model>.yaml + presets + strict overrides,
resolved into the typed settings of components.settings."""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

import yaml

from components.dotted_keys import flatten, set_dotted
from components.error_summary import first_line
from components.settings import ConfigError, Experiment, ModelSettings, build, convert, options
from components.settings import keys as settings_keys

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"
DEFAULTS_FILE = EXPERIMENTS_DIR / "defaults.yaml"
PRESETS_DIR = EXPERIMENTS_DIR / "presets"


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


def _merge(base: dict[str, Any], changes: dict[str, Any], source: str, known: dict[str, Any],
           parsed: bool = True) -> dict[str, Any]:
    """base with changes applied, each key known and each value checked against its type
    (known: dotted key -> type hint); parsed=False: values are command-line text, parsed here by
    the key's type, once."""
    merged = copy.deepcopy(base)
    for key, value in flatten(changes).items():
        if key not in known:
            raise _unknown_key_error(key, list(known), source)
        try:
            value = value if parsed else parse_text(value, known[key], key)
            set_dotted(merged, key, convert(key, value, known[key]))
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
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


def parse_text(raw: Any, hint: Any, key: str) -> Any:
    """A command-line value by its key's type, once: free text (a path, a name) as written (-P
    data=2024 is a folder named 2024; null/~ is null where null is allowed), anything else as YAML."""
    if not isinstance(raw, str):
        return raw
    (kind, *others), nullable = options(hint)
    base = get_args(kind)[0] if get_origin(kind) is Annotated else kind
    if base is str and not others:
        return None if nullable and raw.strip() in ("null", "~", "") else raw
    try:
        return parse_value(raw)
    except yaml.YAMLError as err:  # also python/object tags: safe_load builds plain values only
        raise ConfigError(f"'{key}': {raw!r} is not a plain YAML value ({first_line(err)}); write a number, "
                          f"string, list or mapping") from err


def parse_overrides(items: list[str]) -> dict[str, str]:
    """['train.lr=1e-3', 'model.hidden_dims=[8,16]'] -> {'train.lr': '1e-3', ...}: the text of
    each, parsed by its key's type when merged."""
    texts: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value, e.g. train.epochs=10")
        key, raw = item.split("=", 1)
        texts[key.strip()] = raw
    return texts


def defaults() -> dict[str, Any]:
    """experiments/defaults.yaml as a dict."""
    return _read_yaml(DEFAULTS_FILE)


def experiment_file(model_name: str) -> Path:
    return EXPERIMENTS_DIR / f"{model_name}.yaml"


def presets() -> list[str]:
    """Names of the presets in experiments/presets/."""
    return sorted(path.stem for path in PRESETS_DIR.glob("*.yaml"))


def _preset_files(names: Any) -> list[Path]:
    """experiments/presets/<name>.yaml for each name of `preset` ('cpu' or 'report,cpu'), in order."""
    if names is None:
        return []
    if not isinstance(names, str) or not names.strip():
        raise ConfigError(f"preset={names!r} must be a preset name or a comma-separated list of "
                          f"them; presets: {', '.join(presets())}")
    paths = []
    for name in (part.strip() for part in names.split(",")):
        path = PRESETS_DIR / f"{name}.yaml"
        if not path.exists():
            close = difflib.get_close_matches(name, presets(), n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise ConfigError(f"preset '{name}' does not exist ({path.relative_to(PROJECT_ROOT)}).{hint} "
                              f"Presets: {', '.join(presets())}")
        paths.append(path)
    return paths


def _shown(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path)


def _shared_model_keys() -> set[str]:
    return {f.name for f in dataclasses.fields(ModelSettings)}


def own_defaults(settings: type[ModelSettings]) -> dict[str, Any]:
    """An architecture's own model.* keys with their defaults (fields its Settings class adds)."""
    shared = _shared_model_keys()
    return {f.name: copy.deepcopy(f.default) for f in dataclasses.fields(settings) if f.name not in shared}


def load_config(model_name: str, overrides: list[str] | None = None,
                values: dict[str, Any] | None = None) -> Experiment:
    """Resolve defaults <- experiments/<model_name>.yaml <- presets <- overrides <- values, every
    key known and every value checked (components.settings) before any data is read.

    overrides: command-line 'key=value' text, parsed by each key's type; values: typed values by
    dotted key (an Optuna trial's). The `preset` key names files of experiments/presets/ applied
    before the overrides, whatever their order."""
    from components.models import MODELS  # late: the registry imports an architecture, with torch

    _check_name(model_name, MODELS)
    return experiment(_resolve(model_name, overrides, values, MODELS[model_name].Settings))


def check_before_imports(model_name: str, overrides: list[str] | None = None) -> None:
    """load_config's checks without importing the architecture (so without torch): a command line
    fails a typo in a fraction of a second. The architecture's own keys are checked against its
    Settings class read from its source; if that cannot be read, they pass here and load_config
    checks them."""
    from components.models import MODELS  # the names only: nothing is imported yet

    _check_name(model_name, MODELS)
    architecture = MODELS.settings_without_import(model_name)
    config = _resolve(model_name, overrides, None, architecture)
    if architecture is None:
        config["model"] = {k: v for k, v in config["model"].items() if k in _shared_model_keys()}
    build(Experiment, config, sections={"model": architecture or ModelSettings}).check()


def _check_name(model_name: str, models: Any) -> None:
    if model_name not in models:
        close = difflib.get_close_matches(model_name, list(models), n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise ConfigError(f"unknown model '{model_name}'.{hint} Valid models: {', '.join(sorted(models))}")


def _resolve(model_name: str, overrides: list[str] | None, values: dict[str, Any] | None,
             architecture: type[ModelSettings] | None) -> dict[str, Any]:
    """The merged mapping; architecture None: its own model.* keys are taken unchecked."""
    known = settings_keys(Experiment, {"model": architecture or ModelSettings})
    config = _read_yaml(DEFAULTS_FILE)
    if architecture is None:
        known = _OpenModelKeys(known)
    else:
        config["model"] |= own_defaults(architecture)
    path = experiment_file(model_name)
    if not path.exists():
        raise ConfigError(f"{path} is missing: every model in MODELS needs an experiment file")
    config = _merge(config, _read_yaml(path), _shown(path), known)
    texts = parse_overrides(overrides or [])
    if "preset" in texts:
        config = _merge(config, {"preset": texts.pop("preset")}, "override", known, parsed=False)
    for preset in _preset_files(config["preset"]):
        config = _merge(config, _read_yaml(preset), _shown(preset), known)
    config = _merge(config, texts, "override", known, parsed=False)
    config = _merge(config, values or {}, "value", known)
    if config["model"]["name"] != model_name:
        raise ConfigError(f"{path}: model.name must be '{model_name}' (the file stem)")
    return config


class _OpenModelKeys(dict):
    """Known keys, plus any model.* key (an architecture's own, not imported yet) taken as any value."""

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or str(key).startswith("model.")

    def __missing__(self, key: str) -> Any:
        return Any


def experiment(config: dict[str, Any]) -> Experiment:
    """The typed config of a resolved mapping (a loaded, logged or checkpointed one), checked."""
    from components.models import MODELS  # late: the registry imports an architecture, with torch

    experiment = build(Experiment, config, sections={"model": MODELS[config["model"]["name"]].Settings})
    experiment.check()
    return experiment


def logged_config(saved: dict[str, Any]) -> Experiment:
    """The typed config an earlier run logged: keys it predates take today's values for its model,
    keys no longer read are left out."""
    from components.models import MODELS  # late: the registry imports an architecture, with torch

    name = saved["model"]["name"]
    known = settings_keys(Experiment, {"model": MODELS[name].Settings})
    return load_config(name, values={k: v for k, v in flatten(saved).items() if k in known})


def with_overrides(config: Experiment, overrides: list[str], allowed: tuple[str, ...]) -> Experiment:
    """A resolved config (e.g. a logged run's) with key=value overrides, checked like load_config's;
    only keys under the `allowed` prefixes may change (a model's feature and model settings stay)."""
    texts = parse_overrides(overrides)
    refused = [key for key in texts if not key.startswith(allowed)]
    if refused:
        raise ConfigError(f"override {', '.join(refused)}: only {', '.join(allowed)} settings can "
                          f"change here; the rest are the model's own")
    known = settings_keys(Experiment, {"model": type(config.model)})
    return experiment(_merge(config.to_dict(), texts, "override", known, parsed=False))


def config_hash(config: Experiment) -> str:
    """Stable short hash of a resolved config, logged with every run."""
    canonical = json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
