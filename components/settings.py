"""Typed experiment settings: one dataclass per config section, each field's type saying what it
may hold (Literal choices, Range bounds, `| None` where null means something). `build` turns a
resolved YAML mapping into these classes and is the only place values are checked, so a typo
fails when the config loads, in one line naming the key, what is allowed and a suggestion.
An architecture's own settings are a subclass of ModelSettings declared in its own module.
Imports no torch: the command line checks a config before the heavy imports."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from components.errors import ConfigError
from components.vocabulary import (
    AMP_DTYPES,
    AUTO,
    CHECKPOINT_WRITES,
    COMPILE_MODES,
    LYRICS_ENCODERS,
    METHODS,
    PROMOTION_TASKS,
    PRUNERS,
    SAMPLERS,
    TASKS,
    UNITS,
)

BIG = 1_000_000_000


@dataclass(frozen=True)
class Range:
    """Bounds (included) of a number, and what the key means or a usual value."""

    low: float
    high: float
    fix: str

    def check(self, key: str, value: Any) -> None:
        if not self.low <= value <= self.high:
            raise ConfigError(f"{key}={value!r} must be in [{self.low}, {self.high}]; {self.fix}")

    def shown(self, kind: type) -> str:
        return f"<{'an integer' if kind is int else 'a number'} in [{self.low}, {self.high}]>"


@dataclass(frozen=True)
class Pattern:
    """Text matching a regular expression; `shown` lists its forms for the error."""

    regex: str
    shown: str

    def check(self, key: str, value: Any) -> None:
        if not re.fullmatch(self.regex, value):
            raise ConfigError(f"{key}={value!r} is not one of {self.shown}")


@dataclass(frozen=True)
class NonEmpty:
    """A list with at least one entry, or a name with at least one visible character."""

    example: str

    def check(self, key: str, value: Any) -> None:
        if not (value.strip() if isinstance(value, str) else value):
            raise ConfigError(f"{key}={value!r} must not be empty, e.g. {self.example}")


def seeds(fix: str) -> Any:
    return Annotated[int, Range(0, 2**32 - 1, fix)]


Name = Annotated[str, NonEmpty("music-vae")]
Names = Annotated[list[Annotated[str, NonEmpty("english")]],
                  NonEmpty("[english, spanish], or null: every label in the data")]
Method = Literal[METHODS]


@dataclass
class DataSettings:
    source: str  # 'demo', a metadata.csv or a <root>/<language>/<genre>/ folder
    demo_dir: str
    demo_songs_per_cell: Annotated[int, Range(1, 10_000, "songs per language x genre cell of the demo")]
    cache_dir: str
    languages: Names | None
    genres: Names | None
    val_fraction: Annotated[float, Range(0.01, 0.9, "validation songs drive early stopping, so not 0")]
    test_fraction: Annotated[float, Range(0.0, 0.9, "0.0 drops the test split")]
    split_seed: seeds("any non-negative integer")
    fold: Annotated[int, Range(0, 99, "the fold that is the test split, below eval.folds")]
    decode_workers: Annotated[int, Range(0, 1024, "0 = one per CPU core")]


@dataclass(frozen=True)
class FeatureSettings:
    """The feature settings that determine a cache's content."""

    sample_rate: Annotated[int, Range(1000, 384_000, "22050 is the report's")]
    window_seconds: Annotated[float, Range(0.1, 3600, "30 is the report's")]
    hop_seconds: Annotated[float, Range(0.1, 3600, "20 is the report's")]
    min_tail_seconds: Annotated[float, Range(0.0, 3600, "0 gives every tail a window")]
    n_mels: Annotated[int, Range(1, 1024, "128 is the report's")]
    n_fft: Annotated[int, Range(16, 65_536, "2048 is the report's")]
    hop_length: Annotated[int, Range(1, 65_536, "512 is the report's")]
    silence_db: Annotated[float, Range(-200.0, 0.0, "a peak level in dBFS, -60 is the default")]
    max_song_seconds: Annotated[float, Range(1.0, 86_400.0, "1200 (20 min) is the default")] = 1200.0

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_seconds * self.sample_rate))

    @property
    def frames(self) -> int:
        """Time frames of one window with librosa's centred STFT: 30 s -> 1292."""
        return 1 + self.window_samples // self.hop_length

    @property
    def shape(self) -> tuple[int, int]:
        """(n_mels, frames) of one window."""
        return self.n_mels, self.frames

    def check(self) -> None:
        """Settings that are each in range but make no spectrogram together."""
        window, rate, n_fft = self.window_seconds, self.sample_rate, self.n_fft
        if window * rate < n_fft:
            raise ConfigError(f"features.window_seconds={window} holds {int(window * rate)} samples at "
                                f"features.sample_rate={rate}, fewer than features.n_fft={n_fft}; lengthen "
                                f"the window or lower n_fft")
        if self.max_song_seconds < window:
            raise ConfigError(f"features.max_song_seconds={self.max_song_seconds} is shorter than "
                                f"features.window_seconds={window}: every song would be skipped; raise it")
        if self.n_mels > n_fft // 2 + 1:
            raise ConfigError(f"features.n_mels={self.n_mels} is more than the {n_fft // 2 + 1} frequency "
                                f"bins of features.n_fft={n_fft}; lower n_mels or raise n_fft")
        if self.hop_length > n_fft:
            raise ConfigError(f"features.hop_length={self.hop_length} is larger than features.n_fft={n_fft} "
                                f"(samples between frames would be skipped); use at most n_fft")


@dataclass
class ModelSettings:
    """The model keys every architecture has; an architecture's own keys are a subclass of this,
    declared beside it (its `Settings`), with their defaults."""

    name: str  # the key of components.models.MODELS, set by experiments/<name>.yaml
    latent_dim: Annotated[int, Range(1, 65_536, "128 is the report's")]
    hidden_dims: Annotated[list[Annotated[int, Range(1, 65_536, "a layer width")]],
                           NonEmpty("[32, 64, 128, 256]")]
    dropout: Annotated[float, Range(0.0, 0.99, "a probability below 1; 0 turns it off")]
    beta: Annotated[float, Range(0.0, 1000.0, "the KL weight: 1 for a VAE, 4 for beta-VAE")]
    condition_on: Literal[TASKS] | None


@dataclass
class LyricsSettings:
    encoder: Literal[LYRICS_ENCODERS]
    model: str  # transformer: a local folder or a name in the local Hugging Face cache
    dim: Annotated[int, Range(1, 65_536, "64 is the default")]
    max_length: Annotated[int, Range(1, 1_000_000, "256 is the default")]


@dataclass
class TrainSettings:
    batch_size: Annotated[int, Range(1, BIG, "8 is the default, 32 the report's")]
    epochs: Annotated[int, Range(1, BIG, "at least 1: with 0 the logged model is the untrained "
                                         "initialisation")]
    lr: Annotated[float, Range(1e-12, 10.0, "1e-3 is the default")]
    lr_fan_in_reference: Annotated[int, Range(1, BIG, "1024 is the default; null = one lr for all "
                                                      "weights")] | None
    weight_decay: Annotated[float, Range(0.0, 1.0, "1e-4 is the default; 0 turns it off")]
    early_stopping_patience: Annotated[int, Range(1, BIG, "epochs without a better validation loss before "
                                                          "stopping")]
    grad_clip: Annotated[float, Range(1e-12, 1e12, "the max global grad norm; 0.5 is the default")]
    precise_bn_batches: Annotated[int, Range(0, BIG, "0 = off")]
    amp: bool
    amp_dtype: Literal[AMP_DTYPES]
    kl_warmup_epochs: Annotated[int, Range(0, BIG, "0 = the full KL weight from the first epoch")]
    num_workers: Annotated[int, Range(0, 1024, "0 loads in the training process")]
    prefetch_batches: Annotated[int, Range(0, 1024, "0 = off")]
    device: Annotated[str, Pattern(r"auto|cpu|cuda(:\d+)?", "auto, cpu, cuda, cuda:N (N a GPU index)")]
    channels_last: Literal[AUTO] | bool
    compile: Literal[(AUTO, *COMPILE_MODES)] | None
    data_on_device: Literal[AUTO] | bool
    activation_checkpointing: bool
    lean_host_memory: bool
    checkpoint_dir: str
    async_checkpoint: Literal[CHECKPOINT_WRITES]
    checkpoint_every: Literal["auto"] | Annotated[int, Range(1, BIG, "epochs between checkpoint writes "
                                                                     "(1 = every epoch), or auto")]


@dataclass
class EvalSettings:
    method: Method
    other_methods: list[Method]
    unit: Literal[UNITS]
    permutations: Annotated[int, Range(0, 1_000_000, "0 turns the chance level off, 1000 is the default")]
    bootstrap: Annotated[int, Range(0, 1_000_000, "0 turns the interval off, 1000 is the default")]
    confidence: Annotated[float, Range(0.5, 0.999, "0.95 is the default")]
    alpha: Annotated[float, Range(0.0001, 0.5, "0.05 is the default")]
    untrained_inits: Annotated[int, Range(0, 100, "0 turns the untrained baseline off; 3 is the default")]
    folds: Annotated[int, Range(1, 100, "1 = one train/val/test split")]
    epoch_method: Method | None
    projection_points: Annotated[int, Range(1, BIG, "2000 is the default")]


@dataclass
class TrackingSettings:
    experiment: Name
    system_metrics: bool


@dataclass
class TuneSettings:
    n_trials: Annotated[int, Range(1, BIG, "finished trials the study should hold")]
    study: Name | None
    storage: Name | None
    task: Literal[PROMOTION_TASKS]
    sampler: Literal[SAMPLERS]
    startup_trials: Annotated[int, Range(0, BIG, "5 is the default")]
    pruner: Literal[PRUNERS]
    prune_warmup_epochs: Annotated[int, Range(0, BIG, "3 is the default")]
    timeout: Annotated[int, Range(1, BIG, "seconds; null = until n_trials")] | None
    heartbeat_seconds: Annotated[int, Range(1, BIG, "60 is the default")]
    max_retry: Annotated[int, Range(0, 1000, "2 is the default")]
    keep_checkpoints: bool
    promote: bool
    workers: Annotated[int, Range(1, 1024, "1 = this process only; N = N workers as Ray tasks")]
    gpus_per_trial: Annotated[float, Range(0.0, 64.0, "0 = CPU; 1 = one GPU per worker")]
    cluster: Name | None


@dataclass
class Experiment:
    """A resolved config: experiments/defaults.yaml <- experiments/<model>.yaml <- presets <-
    overrides (components.config.load_config). Components receive their own section."""

    seed: seeds("any non-negative integer; 0 is the default")
    preset: str | None
    data: DataSettings
    features: FeatureSettings
    model: ModelSettings
    lyrics: LyricsSettings
    train: TrainSettings
    eval: EvalSettings
    tracking: TrackingSettings
    tune: TuneSettings

    def check(self) -> None:
        """Rules across keys, each key already valid on its own."""
        self.features.check()
        data, train = self.data, self.train
        if train.compile not in (None, AUTO) and train.activation_checkpointing:
            raise ConfigError("train.activation_checkpointing and train.compile together are not supported; "
                                "set one of them")
        if data.val_fraction + data.test_fraction >= 1:
            total = data.val_fraction + data.test_fraction
            raise ConfigError(f"data.val_fraction + data.test_fraction = {total} leaves no train songs; keep "
                              f"their sum below 1 (e.g. 0.2 + 0.2)")
        folds = self.eval.folds
        if data.fold > folds - 1:
            raise ConfigError(f"data.fold={data.fold!r} must be in [0, {folds - 1}]; eval.folds={folds} has "
                                f"folds 0..{folds - 1}")

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as logged, hashed and stored in checkpoints."""
        return dataclasses.asdict(self)


def _shown(value: Any) -> str:
    return "null" if value is None else str(value)


def _not_a_choice(key: str, value: Any, allowed: tuple[Any, ...]) -> ConfigError:
    words = [str(a) for a in allowed if isinstance(a, str)]
    close = difflib.get_close_matches(str(value), words, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return ConfigError(f"{key}={value!r} is not one of {', '.join(map(_shown, allowed))}{hint}")


def options(hint: Any) -> tuple[list[Any], bool]:
    """A type hint's non-null options, and whether it takes null (`X | None`)."""
    if get_origin(hint) not in (Union, types.UnionType):
        return [hint], False
    return [o for o in get_args(hint) if o is not type(None)], type(None) in get_args(hint)


def _describe(hint: Any) -> str:
    """One option of a union as shown in an error: a choice's words or '<an integer in [1, 10]>'."""
    if get_origin(hint) is Literal:
        return ", ".join(map(_shown, get_args(hint)))
    if get_origin(hint) is Annotated:
        base, *marks = get_args(hint)
        ranges = [m for m in marks if isinstance(m, Range)]
        return ranges[0].shown(base) if ranges else _describe(base)
    return f"<{getattr(hint, '__name__', str(hint))}>"


def _same_kind(value: Any, hint: Any) -> bool:
    base = get_args(hint)[0] if get_origin(hint) is Annotated else hint
    if base in (int, float):
        return isinstance(value, int | float) and not isinstance(value, bool) and (
            base is float or isinstance(value, int))
    return isinstance(base, type) and isinstance(value, base)


def convert(key: str, value: Any, hint: Any) -> Any:
    """value checked against a field's type hint (ints are taken for floats); raises ConfigError."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        choices, nullable = options(hint)
        if value is None:
            if nullable:
                return None
            raise ConfigError(f"{key}=null is not allowed; it takes {' or '.join(map(_describe, choices))}")
        if len(choices) == 1:
            if get_origin(choices[0]) is Literal:  # null or a word: list null among the choices
                if value not in get_args(choices[0]):
                    raise _not_a_choice(key, value, (None, *get_args(choices[0])))
                return value
            return convert(key, value, choices[0])
        for option in choices:
            try:
                return convert(key, value, option)
            except ConfigError:
                if _same_kind(value, option):  # the right type, a wrong value: say what is wrong
                    raise

        words = tuple(w for o in choices if get_origin(o) is Literal for w in get_args(o))
        shown = tuple(w for o in choices
                      for w in (get_args(o) if get_origin(o) is Literal else (_describe(o),)))
        raise _not_a_choice(key, value, shown) if words else ConfigError(
            f"{key}={value!r} must be one of {', '.join(shown)}")
    if value is None:
        fixes = [m.fix for m in get_args(hint)[1:] if isinstance(m, Range)] if origin is Annotated else []
        raise ConfigError(f"{key}=null is not allowed; it takes {_describe(hint)}"
                          + "".join(f"; {fix}" for fix in fixes))
    if origin is Annotated:
        base, *marks = get_args(hint)
        try:
            value = convert(key, value, base)
        except ConfigError:
            ranges = [m for m in marks if isinstance(m, Range)]
            if not ranges:
                raise
            low, high, fix = ranges[0].low, ranges[0].high, ranges[0].fix
            raise ConfigError(f"{key}={value!r} must be a number in [{low}, {high}]; {fix}") from None
        for mark in marks:
            mark.check(key, value)
        return value
    if origin is Literal:
        if value not in get_args(hint):
            raise _not_a_choice(key, value, get_args(hint))
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}={value!r} must be a list, e.g. [a, b] or []")
        (item,) = get_args(hint)
        return [convert(f"{key} entry", entry, item) for entry in value]
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    return _scalar(key, value, hint)


def _scalar(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={value!r} must be true or false")
    if kind in (int, float) and (isinstance(value, bool) or not isinstance(value, int | float)
                                 or (kind is int and not isinstance(value, int))):
        raise ConfigError(f"{key}={value!r} must be {'an integer' if kind is int else 'a number'}, "
                            f"got {type(value).__name__}")
    if kind is float:
        if not math.isfinite(value):
            raise ConfigError(f"{key}={value!r} must be a finite number")
        return float(value)
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{key}={value!r} must be text, got {type(value).__name__}; quote it")
    return value


def hints(cls: type) -> dict[str, Any]:
    """Field name -> type hint (Annotated marks kept) of a settings dataclass."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in typing.get_type_hints(cls, include_extras=True).items() if k in names}


def keys(cls: type, sections: dict[str, type] | None = None, prefix: str = "") -> dict[str, Any]:
    """Every dotted key of a settings class -> its type hint; sections replaces a nested field's
    class (the model section: the architecture's own Settings)."""
    flat = {}
    for name, hint in hints(cls).items():
        nested = (sections or {}).get(name, hint)
        if dataclasses.is_dataclass(nested):
            flat |= keys(nested, None, f"{prefix}{name}.")
        else:
            flat[f"{prefix}{name}"] = hint
    return flat


def build(cls: type, values: Any, where: str = "", sections: dict[str, type] | None = None) -> Any:
    """An instance of the settings class cls from a mapping, every value checked."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}={values!r} must be a mapping of keys")
    prefix = f"{where}." if where else ""
    fields = hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f"; did you mean {prefix}{close[0]}?" if close else ""
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'{hint}")
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(values))
    if missing:
        raise ConfigError(f"'{prefix}{missing[0]}' is missing; every key of experiments/defaults.yaml "
                            f"needs a value")
    converted = {}
    for name, value in values.items():
        nested = (sections or {}).get(name)
        converted[name] = (build(nested, value, f"{prefix}{name}") if nested
                           else convert(f"{prefix}{name}", value, fields[name]))
    return cls(**converted)
