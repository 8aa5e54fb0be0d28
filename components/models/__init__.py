"""The registration table: model name -> architecture class, imported when first looked up (so
listing or checking names imports no torch). Name = experiments/<name>.yaml stem = MLflow tag."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from components.models.base import VAE
    from components.settings import Experiment, FeatureSettings, ModelSettings


class Registry(MutableMapping[str, "type[VAE]"]):
    """name -> class; an entry may be written as 'module:Class' text, imported on first use."""

    def __init__(self, entries: dict[str, Any]) -> None:
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> type[VAE]:
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attribute)
        return entry

    def __setitem__(self, name: str, entry: type[VAE] | str) -> None:
        self._entries[name] = entry

    def settings_without_import(self, name: str) -> type[ModelSettings] | None:
        """The architecture's Settings class, read from its source if its module is not imported
        yet (components.models.settings_source); None when that cannot be done."""
        from components.models.settings_source import settings_from_source

        entry = self._entries[name]
        return settings_from_source(entry) if isinstance(entry, str) else entry.Settings

    def __contains__(self, name: object) -> bool:  # a name's check imports nothing
        return name in self._entries

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


MODELS = Registry({
    "basic_vae": "components.models.basic_vae:BasicVAE",
    "conv_vae": "components.models.conv_vae:ConvVAE",
    "beta_vae": "components.models.conv_vae:ConvVAE",  # experiments/beta_vae.yaml sets model.beta = 4.0
    "cvae_language": "components.models.cvae:CVAE",
    "cvae_genre": "components.models.cvae:CVAE",
    "vade": "components.models.vade:VaDE",
    "multimodal": "components.models.multimodal:MultimodalVAE",
})


def build_model(name: str, config: Experiment | None = None) -> VAE:
    """Build a model by name; without a config, the full-size model of experiments/<name>.yaml."""
    from components.config import ConfigError, load_config

    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}'. Valid models: {', '.join(sorted(MODELS))}")
    config = config if config is not None else load_config(name)
    return model_of(config.model, config.features, config.train.kl_warmup_epochs)


def model_of(settings: ModelSettings, features: FeatureSettings, kl_warmup_epochs: int) -> VAE:
    """The network of an architecture's settings, for windows of the feature settings."""
    return MODELS[settings.name].from_settings(settings, features.shape, kl_warmup_epochs)


def model_settings(saved: dict[str, Any]) -> ModelSettings:
    """An architecture's settings from a stored model section (a served model's), checked; keys an
    older version stored that the architecture no longer reads are left out."""
    from components.settings import build, hints

    settings = MODELS[saved["name"]].Settings
    return build(settings, {k: v for k, v in saved.items() if k in hints(settings)}, "model")


def adapt_to_data(config: Experiment, vocab: dict[str, list[str]],
                  lyrics_dim: int | None = None) -> Experiment:
    """Values that follow the data: a CVAE's class count is that of its label in the cache, a
    multimodal model's lyrics width that of the lyrics encoder."""
    model = config.model
    if model.condition_on and hasattr(model, "num_classes"):
        model.num_classes = len(vocab[model.condition_on])
    if lyrics_dim is not None and hasattr(model, "lyrics_dim"):
        model.lyrics_dim = lyrics_dim
    return config


def count_parameters(model: VAE) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "Registry", "adapt_to_data", "build_model", "count_parameters", "model_of",
           "model_settings"]
