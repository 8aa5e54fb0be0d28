"""The logged model: raw log-mel windows in, latent means out (normalisation built in)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from components.models import VAE


class LatentEncoder(nn.Module):
    """[B, 1, n_mels, T] log-mel in dB (as the feature cache stores it) -> [B, latent] means.

    Carries the train-split normalisation, so a user feeds features straight from
    components.audio.log_mel; `.vae` is the full model for reconstructions.
    """

    def __init__(self, vae: VAE, mel_mean: np.ndarray, mel_std: np.ndarray) -> None:
        super().__init__()
        self.vae = vae
        self.register_buffer("mel_mean", torch.as_tensor(mel_mean, dtype=torch.float32)[:, None])
        self.register_buffer("mel_std", torch.as_tensor(mel_std, dtype=torch.float32)[:, None])

    def normalise(self, log_mel_db: Tensor) -> Tensor:
        return (log_mel_db.float() - self.mel_mean) / self.mel_std

    def forward(self, log_mel_db: Tensor) -> Tensor:
        self.vae.eval()
        with torch.no_grad():
            return self.vae.embed({"mel": self.normalise(log_mel_db)})
