"""Conditional VAE: the Conv VAE conditioned on one label (genre or language) from the batch."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from components.models.base import Batch
from components.models.conv_vae import ConvVAE


class CVAE(ConvVAE):
    """ConvVAE + a learned class embedding c [B, condition_dim] of batch[condition_on]:
    c joins the flattened features before mu / logvar and z before the decoder, and one extra
    input plane (c stretched over the mel axis, constant over time) enters the first conv.

    Full size: 69,709,761 (4 languages) / 69,709,729 (3 genres) parameters, i.e. ConvVAE +
    classes x 32 + 512 (extra plane) + 2 x 32 x 128 (mu, logvar) + 32 x flat (decoder input).
    Its latent space is pushed to carry no information about the conditioning label, so its
    clustering score on that label is not an unsupervised result (tagged in every run).
    """

    def __init__(self, input_shape: tuple[int, int], latent_dim: int, hidden_dims: list[int],
                 dropout: float, num_classes: int, condition_on: str, condition_dim: int = 32,
                 beta: float = 1.0, kl_warmup_epochs: int = 0) -> None:
        super().__init__(input_shape, latent_dim, hidden_dims, dropout, beta, kl_warmup_epochs,
                         extra_in_channels=1, extra_features=condition_dim)
        self.condition_on = condition_on
        self.embedding = nn.Embedding(num_classes, condition_dim)

    @classmethod
    def from_config(cls, config: dict[str, Any], input_shape: tuple[int, int]) -> CVAE:
        model = config["model"]
        if model["condition_on"] not in ("genre", "language") or not model["num_classes"]:
            raise ValueError(f"{model['name']}: model.condition_on must be genre or language and "
                             f"model.num_classes a positive count (got {model['condition_on']!r}, "
                             f"{model['num_classes']!r})")
        return cls(input_shape=input_shape, latent_dim=model["latent_dim"],
                   hidden_dims=list(model["hidden_dims"]), dropout=model["dropout"],
                   num_classes=model["num_classes"], condition_on=model["condition_on"],
                   condition_dim=model["condition_dim"], beta=model["beta"],
                   kl_warmup_epochs=config["train"]["kl_warmup_epochs"])

    def condition(self, batch: Batch) -> Tensor:
        labels = batch[self.condition_on]
        if labels.max() >= self.embedding.num_embeddings or labels.min() < 0:
            raise ValueError(f"{self.condition_on} label {int(labels.max())} outside the "
                             f"{self.embedding.num_embeddings} classes this CVAE was built for")
        return self.embedding(labels)

    def encoder_input(self, batch: Batch) -> Tensor:
        mel = batch["mel"]
        n_mels, frames = mel.shape[-2:]
        # The embedding stretched to n_mels rows: the plane costs no parameters beyond the
        # first conv's extra input channel.
        rows = F.interpolate(self.condition(batch)[:, None, :], size=n_mels, mode="linear",
                             align_corners=True)
        plane = rows[:, :, :, None].expand(-1, 1, n_mels, frames).to(mel.dtype)
        return torch.cat([mel, plane], dim=1)
