"""The interface every architecture shares: forward on a batch dict, loss terms, embeddings."""

from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from components.settings import Experiment, ModelSettings

# Pass as `epoch` to score the full objective (KL weight = beta): validation uses it, so that
# val/loss compares across epochs and the warm-up cannot fake an early best epoch.
AFTER_WARMUP = 1 << 30

Batch = dict[str, Tensor]  # "mel": [B, 1, n_mels, T] normalised log-mel; "genre"/"language": [B] int64


@dataclass
class VAEOutput:
    recon: Tensor  # [B, 1, n_mels, T]
    mu: Tensor  # [B, latent]
    logvar: Tensor  # [B, latent]
    z: Tensor  # [B, latent]


@dataclass
class FitSetup:
    """What a stage before training (before_fit) may use: the train loader, the resolved config,
    device and precision, a folder for its own state, the feature cache's digest (to key that
    state) and a metrics callback (metrics, step)."""

    loader: Any
    config: Experiment
    device: torch.device
    precision: Any
    directory: Path
    cache_digest: str
    log_metrics: Callable[[dict[str, float], int], None]


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latent dims -> [B]."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def summed_squared_error(recon: Tensor, target: Tensor) -> Tensor:
    """Squared error summed over every feature of an example -> [B] (float32 even under AMP)."""
    return (recon.float() - target.float()).pow(2).flatten(1).sum(dim=1)


class VAE(nn.Module, ABC):
    """Base VAE. Subclasses implement encode and decode; the loss and sampling live here once.

    Loss scale (the same for every architecture): reconstruction summed over features and
    KL summed over latent dims, each averaged over the batch; beta * warm-up weight on KL.
    """

    uses_lyrics = False  # True: batches carry "lyrics" [B, lyrics_dim] and "has_lyrics" [B]
    # Its model.* settings: the shared ones, or a subclass declared beside the architecture adding
    # the keys only it reads, with their defaults and allowed values (checked when the config loads).
    Settings: ClassVar[type[ModelSettings]] = ModelSettings

    def __init__(self, input_shape: tuple[int, int], latent_dim: int, beta: float = 1.0,
                 kl_warmup_epochs: int = 0) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)  # (n_mels, frames)
        # The (mel bins, frames) the decoder really produces, from the top-left corner: a conv
        # decoder's 1280 frames are edge-padded to 1292, and the 12 copies are not predictions.
        self.decoded_shape = tuple(input_shape)
        self.latent_dim = latent_dim
        self.beta = beta
        self.kl_warmup_epochs = kl_warmup_epochs

    @classmethod
    def from_settings(cls, settings: ModelSettings, input_shape: tuple[int, int],
                      kl_warmup_epochs: int = 0) -> VAE:
        """The model of its settings: every constructor argument named like a setting takes its value."""
        values = dataclasses.asdict(settings)
        arguments = {name: values[name] for name in inspect.signature(cls.__init__).parameters
                     if name in values}
        return cls(input_shape=input_shape, kl_warmup_epochs=kl_warmup_epochs, **arguments)

    def before_fit(self, setup: FitSetup) -> dict[str, str]:
        """A stage the architecture runs before its training loop, on a fresh (not resumed) run,
        e.g. VaDE's autoencoder pretraining; returns tags for the run. Default: none."""
        return {}

    @abstractmethod
    def encode(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """-> (mu, logvar), each [B, latent]."""

    @abstractmethod
    def decode(self, z: Tensor, batch: Batch) -> Tensor:
        """[B, latent] -> reconstruction [B, 1, n_mels, T]."""

    def forward(self, batch: Batch) -> VAEOutput:
        mu, logvar = self.encode(batch)
        if self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        return VAEOutput(recon=self.decode(z, batch), mu=mu, logvar=logvar, z=z)

    def kl_weight(self, epoch: int) -> float:
        """beta, ramped linearly from 0 over the warm-up epochs (epoch counts from 0)."""
        if self.kl_warmup_epochs <= 0:
            return self.beta
        return self.beta * min(1.0, (epoch + 1) / self.kl_warmup_epochs)

    def reconstruction_error(self, recon: Tensor, target: Tensor) -> Tensor:
        """Squared error summed over the features the decoder really produces -> [B], float32:
        padded frames are neither fitted nor counted."""
        height, width = self.decoded_shape
        return summed_squared_error(recon[..., :height, :width], target[..., :height, :width])

    @property
    def reconstructed_features(self) -> int:
        """How many features reconstruction_error sums over (per example)."""
        return self.decoded_shape[0] * self.decoded_shape[1]

    def loss(self, batch: Batch, out: VAEOutput, epoch: int) -> dict[str, Tensor]:
        """-> {'total', 'recon', 'kl'}: batch means, float32."""
        recon = self.reconstruction_error(out.recon, batch["mel"]).mean()
        kl = gaussian_kl(out.mu.float(), out.logvar.float()).mean()
        return {"total": recon + self.kl_weight(epoch) * kl, "recon": recon, "kl": kl}

    def constrain_(self) -> None:
        """Put parameters back inside their valid range after an optimizer step (the trainer
        calls it after each one); architectures without constrained parameters do nothing."""

    @torch.no_grad()
    def embed(self, batch: Batch) -> Tensor:
        """Latent means [B, latent]: what clustering and the served model use."""
        return self.encode(batch)[0]
