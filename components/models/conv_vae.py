"""Conv VAE: the report's 4-layer convolutional encoder/decoder with a flattened bottleneck."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from components.models.base import VAE, Batch
from components.models.blocks import announce_fit, conv_decoder, conv_encoder, conv_encoder_shape, fit_to


class ConvVAE(VAE):
    """[B, 1, n_mels, T] -> conv_down x len(hidden_dims) -> flatten [B, C*h*w] -> mu, logvar
    -> Linear -> [B, C, h, w] -> conv_up ... -> ConvT to 1 channel -> fit to (n_mels, T).

    At 128 x 1292 the encoder map is 256 x 8 x 80 and the decoder yields 128 x 1280, padded to
    1292 by edge replication (announced at build). Full size: 64,458,049 parameters.
    """

    def __init__(self, input_shape: tuple[int, int], latent_dim: int, hidden_dims: list[int],
                 dropout: float, beta: float = 1.0, kl_warmup_epochs: int = 0,
                 extra_in_channels: int = 0, extra_features: int = 0) -> None:
        super().__init__(input_shape, latent_dim, beta, kl_warmup_epochs)
        # extra_in_channels / extra_features let conditional subclasses join a condition
        # to the input planes and to the flattened features without rewriting this class.
        self.encoder = conv_encoder(1 + extra_in_channels, hidden_dims, dropout)
        self.map_shape = (hidden_dims[-1], *conv_encoder_shape(input_shape, len(hidden_dims)))
        flat = math.prod(self.map_shape)
        self.fc_mu = nn.Linear(flat + extra_features, latent_dim)
        self.fc_logvar = nn.Linear(flat + extra_features, latent_dim)
        self.fc_decode = nn.Linear(latent_dim + extra_features, flat)
        self.decoder = conv_decoder(hidden_dims, dropout)
        scale = 2 ** len(hidden_dims)
        produced = (self.map_shape[1] * scale, self.map_shape[2] * scale)
        announce_fit(produced, self.input_shape)
        self.decoded_shape = (min(produced[0], input_shape[0]), min(produced[1], input_shape[1]))

    def encoder_input(self, batch: Batch) -> Tensor:
        """[B, 1 + extra_in_channels, n_mels, T]; conditional subclasses add their planes."""
        return batch["mel"]

    def condition(self, batch: Batch) -> Tensor | None:
        """[B, extra_features] joined to the flat features and to z, or None."""
        return None

    def encode(self, batch: Batch) -> tuple[Tensor, Tensor]:
        hidden = self.encoder(self.encoder_input(batch)).flatten(1)
        extra = self.condition(batch)
        if extra is not None:
            hidden = torch.cat([hidden, extra.to(hidden.dtype)], dim=1)
        return self.fc_mu(hidden), self.fc_logvar(hidden)

    def decode(self, z: Tensor, batch: Batch) -> Tensor:
        extra = self.condition(batch)
        if extra is not None:
            z = torch.cat([z, extra.to(z.dtype)], dim=1)
        hidden = self.fc_decode(z).view(-1, *self.map_shape)
        return fit_to(self.decoder(hidden), self.input_shape)
