"""What every config key may hold: ranges, choices and where null is allowed, checked when the config
is loaded (before any data is read), one line per mistake naming the key, the value, what is
allowed and the fix. Types are checked on merge (components.config); cross-key rules that need
the data (every split non-empty for this corpus) are checked where the data is read."""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

from components.dotted_keys import flatten
from components.vocabulary import (
    CHECKPOINT_WRITES,
    COMPILE_MODES,
    LYRICS_ENCODERS,
    METHODS,
    PRUNERS,
    SAMPLERS,
    TASKS,
    UNITS,
)

BIG = 1_000_000_000
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")

# key: (lowest, highest, what the key means or a usual value); bounds included.
RANGES: dict[str, tuple[float, float, str]] = {
    "seed": (0, 2**32 - 1, "any non-negative integer; 0 is the default"),
    "data.demo_songs_per_cell": (1, 10_000, "songs per language x genre cell of the demo corpus"),
    "data.val_fraction": (0.01, 0.9, "validation songs drive early stopping, so it cannot be 0"),
    "data.test_fraction": (0.0, 0.9, "0.0 drops the test split"),
    "data.split_seed": (0, 2**32 - 1, "any non-negative integer"),
    "data.decode_workers": (0, 1024, "0 = one per CPU core"),
    "features.sample_rate": (1000, 384_000, "22050 is the report's"),
    "features.window_seconds": (0.1, 3600, "30 is the report's"),
    "features.hop_seconds": (0.1, 3600, "20 is the report's"),
    "features.min_tail_seconds": (0.0, 3600, "0 gives every tail a window"),
    "features.n_mels": (1, 1024, "128 is the report's"),
    "features.n_fft": (16, 65_536, "2048 is the report's"),
    "features.hop_length": (1, 65_536, "512 is the report's"),
    "features.silence_db": (-200.0, 0.0, "a peak level in dBFS, -60 is the default"),
    "features.max_song_seconds": (1.0, 86_400.0, "1200 (20 min) is the default"),
    "model.latent_dim": (1, 65_536, "128 is the report's"),
    "model.dropout": (0.0, 0.99, "a probability below 1; 0 turns it off"),
    "model.beta": (0.0, 1000.0, "the KL weight: 1 for a VAE, 4 for beta-VAE"),
    "lyrics.dim": (1, 65_536, "64 is the default"),
    "lyrics.max_length": (1, 1_000_000, "256 is the default"),
    "train.batch_size": (1, BIG, "8 is the default, 32 the report's"),
    "train.epochs": (1, BIG, "at least 1: with 0 the logged model is the untrained initialisation"),
    "train.lr": (1e-12, 10.0, "1e-3 is the default"),
    "train.lr_fan_in_reference": (1, BIG, "1024 is the default; null = one lr for all weights"),
    "train.weight_decay": (0.0, 1.0, "1e-4 is the default; 0 turns it off"),
    "train.early_stopping_patience": (1, BIG, "epochs without a better validation loss before stopping"),
    "train.grad_clip": (1e-12, 1e12, "the max global grad norm; 0.5 is the default"),
    "train.precise_bn_batches": (0, BIG, "0 = off"),
    "train.kl_warmup_epochs": (0, BIG, "0 = the full KL weight from the first epoch"),
    "train.num_workers": (0, 1024, "0 loads in the training process"),
    "train.prefetch_batches": (0, 1024, "0 = off"),
    "train.checkpoint_every": (1, BIG, "epochs between checkpoint writes (1 = every epoch), or auto"),
    "eval.permutations": (0, 1_000_000, "0 turns the chance level off, 1000 is the default"),
    "eval.bootstrap": (0, 1_000_000, "0 turns the interval off, 1000 is the default"),
    "eval.confidence": (0.5, 0.999, "0.95 is the default"),
    "eval.alpha": (0.0001, 0.5, "0.05 is the default"),
    "eval.untrained_inits": (0, 100, "0 turns the untrained baseline off; 3 is the default"),
    "eval.folds": (1, 100, "1 = one train/val/test split"),
    "eval.projection_points": (1, BIG, "2000 is the default"),
    "tune.n_trials": (1, BIG, "finished trials the study should hold"),
    "tune.startup_trials": (0, BIG, "5 is the default"),
    "tune.prune_warmup_epochs": (0, BIG, "3 is the default"),
    "tune.timeout": (1, BIG, "seconds; null = until n_trials"),
    "tune.heartbeat_seconds": (1, BIG, "60 is the default"),
    "tune.max_retry": (0, 1000, "2 is the default"),
}

# Ranged keys that also take these words (components.config.ALSO_ACCEPTS lets their numbers in).
WORDS: dict[str, tuple[str, ...]] = {"train.checkpoint_every": ("auto",)}

# Keys whose documented meaning includes null (besides those whose default is null).
NULLABLE = {"eval.epoch_method", "train.lr_fan_in_reference"}


def _choices() -> dict[str, tuple[Any, ...]]:
    return {
        "model.condition_on": (None, *TASKS), "lyrics.encoder": LYRICS_ENCODERS,
        "train.compile": (None, *COMPILE_MODES), "train.async_checkpoint": CHECKPOINT_WRITES,
        "eval.method": METHODS, "eval.epoch_method": (None, *METHODS), "eval.unit": UNITS,
        "tune.task": (*TASKS, "both"), "tune.sampler": SAMPLERS, "tune.pruner": PRUNERS,
    }


def _is_range(rule: tuple[Any, ...]) -> bool:
    return len(rule) == 3 and isinstance(rule[0], int | float) and isinstance(rule[2], str)


def _shown(value: Any) -> str:
    return "null" if value is None else str(value)


def _not_a_choice(key: str, value: Any, allowed: tuple[Any, ...]) -> str:
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed if a is not None], n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{key}={value!r} is not one of {', '.join(map(_shown, allowed))}{hint}"


def check_settings(config: dict[str, Any], defaults: dict[str, Any], own_rules: dict[str, tuple[Any, ...]],
                   error: type[Exception]) -> None:
    """Raise `error` for the first value outside what its key allows (flat keys: 'train.lr');
    own_rules: the architecture's own keys, as (lowest, highest, fix) ranges or choice tuples."""
    flat, default = flatten(config), flatten(defaults)
    own_choices = {k: rule for k, rule in own_rules.items() if not _is_range(rule)}
    own_ranges = {k: rule for k, rule in own_rules.items() if _is_range(rule)}
    for key, value in flat.items():
        if value is None and default.get(key) is not None and key not in NULLABLE:
            raise error(f"{key}=null is not allowed; set a value like the default {default[key]!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise error(f"{key}={value!r} must be a finite number; the default is {default.get(key)!r}")
    for key, allowed in (_choices() | own_choices).items():
        if flat[key] not in allowed:
            raise error(_not_a_choice(key, flat[key], allowed))
    for key, (low, high, fix) in (RANGES | own_ranges).items():
        value = flat[key]
        if key in WORDS and isinstance(value, str):
            if value not in WORDS[key]:
                raise error(_not_a_choice(key, value, (*WORDS[key], f"<an integer >= {low}>")))
            continue
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise error(f"{key}={value!r} must be a number in [{low}, {high}]; {fix}")
        if not low <= value <= high:
            raise error(f"{key}={value!r} must be in [{low}, {high}]; {fix}")
    for key in ("tune.study", "tune.storage", "tracking.experiment"):
        if flat[key] is not None and (not isinstance(flat[key], str) or not flat[key].strip()):
            null = "" if key == "tracking.experiment" else " or null"
            raise error(f"{key}={flat[key]!r} must be a non-empty name{null}")
    if not DEVICE.fullmatch(flat["train.device"]):
        raise error(f"train.device={flat['train.device']!r} is not one of auto, cpu, cuda, cuda:N (N a GPU "
                    f"index)")
    if flat["train.compile"] is not None and flat["train.activation_checkpointing"]:
        raise error("train.activation_checkpointing and train.compile together are not supported; "
                    "set one of them")
    _check_lists(flat, error)
    _check_features(flat, error)
    if flat["data.val_fraction"] + flat["data.test_fraction"] >= 1:
        raise error(f"data.val_fraction + data.test_fraction = "
                    f"{flat['data.val_fraction'] + flat['data.test_fraction']} leaves no train songs; "
                    f"keep their sum below 1 (e.g. 0.2 + 0.2)")
    folds = flat["eval.folds"]
    if not 0 <= flat["data.fold"] <= folds - 1:
        raise error(f"data.fold={flat['data.fold']!r} must be in [0, {folds - 1}]; eval.folds={folds} has "
                    f"folds 0..{folds - 1}")


def _check_lists(flat: dict[str, Any], error: type[Exception]) -> None:
    hidden = flat["model.hidden_dims"]
    if not hidden or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden):
        raise error(f"model.hidden_dims={hidden!r} must be a non-empty list of positive integers, "
                    f"e.g. [32, 64, 128, 256]")
    for key in ("data.languages", "data.genres"):
        names = flat[key]
        if names is not None and (not isinstance(names, list) or not names
                                  or not all(isinstance(n, str) and n.strip() for n in names)):
            raise error(f"{key}={names!r} must be null (every label in the data) or a non-empty list of "
                        f"names, e.g. [english, spanish]")
    methods = flat["eval.other_methods"]
    if not isinstance(methods, list):
        raise error(f"eval.other_methods={methods!r} must be a list, e.g. [agglomerative, gmm] or []")
    allowed = _choices()["eval.method"]
    for method in methods:
        if method not in allowed:
            raise error(_not_a_choice("eval.other_methods entry", method, allowed))


def _check_features(flat: dict[str, Any], error: type[Exception]) -> None:
    """Settings that are each in range but make no spectrogram together."""
    window, rate = flat["features.window_seconds"], flat["features.sample_rate"]
    n_fft = flat["features.n_fft"]
    if window * rate < n_fft:
        raise error(f"features.window_seconds={window} holds {int(window * rate)} samples at "
                    f"features.sample_rate={rate}, fewer than features.n_fft={n_fft}; lengthen the window "
                    f"or lower n_fft")
    if flat["features.max_song_seconds"] < window:
        raise error(f"features.max_song_seconds={flat['features.max_song_seconds']} is shorter than "
                    f"features.window_seconds={window}: every song would be skipped; raise it")
    if flat["features.n_mels"] > n_fft // 2 + 1:
        raise error(f"features.n_mels={flat['features.n_mels']} is more than the {n_fft // 2 + 1} frequency "
                    f"bins of features.n_fft={n_fft}; lower n_mels or raise n_fft")
    if flat["features.hop_length"] > n_fft:
        raise error(f"features.hop_length={flat['features.hop_length']} is larger than "
                    f"features.n_fft={n_fft} (samples between frames would be skipped); use at most n_fft")
