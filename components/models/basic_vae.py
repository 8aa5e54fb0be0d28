"""Basic VAE: the report's fully-connected baseline on the flattened spectrogram."""

from __future__ import annotations

from torch import Tensor, nn

from components.models.base import VAE, Batch
from components.models.blocks import fc_decoder, fc_encoder


class BasicVAE(VAE):
    """[B, 1, n_mels, T] -> flatten -> FC blocks (hidden_dims) -> mu, logvar [B, latent]
    -> FC blocks reversed -> Linear -> [B, 1, n_mels, T]. Full size: 5,488,032 parameters."""

    def __init__(self, input_shape: tuple[int, int], latent_dim: int, hidden_dims: list[int],
                 dropout: float, beta: float = 1.0, kl_warmup_epochs: int = 0) -> None:
        super().__init__(input_shape, latent_dim, beta, kl_warmup_epochs)
        features = input_shape[0] * input_shape[1]
        self.encoder = fc_encoder(features, hidden_dims, dropout)
        self.fc_mu = nn.Linear(hidden_dims[-1], latent_dim)
        self.fc_logvar = nn.Linear(hidden_dims[-1], latent_dim)
        self.decoder = fc_decoder(latent_dim, hidden_dims, features, dropout)

    def encode(self, batch: Batch) -> tuple[Tensor, Tensor]:
        hidden = self.encoder(batch["mel"].flatten(1))
        return self.fc_mu(hidden), self.fc_logvar(hidden)

    def decode(self, z: Tensor, batch: Batch) -> Tensor:
        return self.decoder(z).view(-1, 1, *self.input_shape)
