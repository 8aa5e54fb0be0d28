"""Conditional VAE: the Conv VAE conditioned on one label (genre or language) from the batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from components.models.base import Batch
from components.models.conv_vae import ConvVAE
from components.settings import BIG, ModelSettings, Range
from components.vocabulary import TASKS


@dataclass
class CVAESettings(ModelSettings):
    num_classes: Annotated[int, Range(2, BIG, "set from the data; leave it null")] | None = None
    condition_dim: Annotated[int, Range(1, 65_536, "32 is the default")] = 32


class CVAE(ConvVAE):
    """ConvVAE + a learned class embedding c [B, condition_dim] of batch[condition_on]:
    c joins the flattened features before mu / logvar and z before the decoder, and one extra
    input plane (c stretched over the mel axis, constant over time) enters the first conv.

    Full size: 69,709,761 (4 languages) / 69,709,729 (3 genres) parameters, i.e. ConvVAE +
    classes x 32 + 512 (extra plane) + 2 x 32 x 128 (mu, logvar) + 32 x flat (decoder input).
    Its latent space is pushed to carry no information about the conditioning label, so its
    clustering score on that label is not an unsupervised result (tagged in every run).
    """

    Settings = CVAESettings

    def __init__(self, input_shape: tuple[int, int], latent_dim: int, hidden_dims: list[int],
                 dropout: float, num_classes: int, condition_on: str, condition_dim: int = 32,
                 beta: float = 1.0, kl_warmup_epochs: int = 0) -> None:
        if condition_on not in TASKS or not num_classes:
            raise ValueError(f"a CVAE needs model.condition_on in {', '.join(TASKS)} and model.num_classes a "
                             f"positive count (got {condition_on!r}, {num_classes!r})")
        super().__init__(input_shape, latent_dim, hidden_dims, dropout, beta, kl_warmup_epochs,
                         extra_in_channels=1, extra_features=condition_dim)
        self.condition_on = condition_on
        self.embedding = nn.Embedding(num_classes, condition_dim)


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
