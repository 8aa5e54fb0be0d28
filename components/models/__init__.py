"""The registration table: model name -> class. Name = experiments/<name>.yaml stem = MLflow tag."""

from __future__ import annotations

from typing import Any

from components.config import ConfigError, load_config
from components.models.base import VAE, Batch, VAEOutput
from components.models.basic_vae import BasicVAE
from components.models.conv_vae import ConvVAE
from components.models.cvae import CVAE
from components.models.multimodal import MultimodalVAE
from components.models.vade import VaDE

MODELS: dict[str, type[VAE]] = {
    "basic_vae": BasicVAE,
    "conv_vae": ConvVAE,
    "beta_vae": ConvVAE,  # the same network; experiments/beta_vae.yaml sets model.beta = 4.0
    "cvae_language": CVAE,
    "cvae_genre": CVAE,
    "vade": VaDE,
    "multimodal": MultimodalVAE,
}


def input_shape_of(config: dict[str, Any]) -> tuple[int, int]:
    """(n_mels, frames) of a window under the config's feature settings."""
    from components.data.audio import FeatureSpec

    spec = FeatureSpec(**config["features"])
    return spec.n_mels, spec.frames


def build_model(name: str, config: dict[str, Any] | None = None) -> VAE:
    """Build a model by name; without a config, the full-size model of experiments/<name>.yaml."""
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}'. Valid models: {', '.join(sorted(MODELS))}")
    config = config if config is not None else load_config(name)
    return MODELS[name].from_config(config, input_shape_of(config))


def adapt_to_data(config: dict[str, Any], vocab: dict[str, list[str]],
                  lyrics_dim: int | None = None) -> dict[str, Any]:
    """Values that follow the data: a CVAE's class count is that of its label in the cache, a
    multimodal model's lyrics width that of the lyrics encoder."""
    model = config["model"]
    if model["condition_on"] and "num_classes" in model:
        model["num_classes"] = len(vocab[model["condition_on"]])
    if lyrics_dim is not None and "lyrics_dim" in model:
        model["lyrics_dim"] = lyrics_dim
    return config


def count_parameters(model: VAE) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODELS", "VAE", "Batch", "VAEOutput", "adapt_to_data", "build_model", "count_parameters",
           "input_shape_of"]
