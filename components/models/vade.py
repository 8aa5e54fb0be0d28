"""VaDE (Jiang et al., 2017): a VAE whose prior is a learned Gaussian mixture, clustering as it trains."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from components.models.base import Batch, FitSetup, VAEOutput
from components.models.basic_vae import BasicVAE
from components.settings import BIG, ModelSettings, Range

# Cluster log-variances stay in this range: a component collapsing onto a few points would
# otherwise drive its variance to 0 and the ELBO to -inf. The parameter itself is kept inside it
# (initialisation, and constrain_ after every optimizer step), so the clamp in the forward pass
# never cuts a gradient: a value below the floor would get none and never move again.
LOGVAR_RANGE = (-8.0, 8.0)


@dataclass
class VaDESettings(ModelSettings):
    n_clusters: Annotated[int, Range(2, BIG, "null: one per class of the task")] | None = None
    pretrain_epochs: Annotated[int, Range(0, BIG, "0 = no pretraining")] = 0


class VaDE(BasicVAE):
    """[B, 1, n_mels, T] -> flatten -> FC blocks (hidden_dims) -> mu, logvar [B, latent]
    -> FC blocks reversed -> Linear -> [B, 1, n_mels, T], with a mixture prior
    p(z) = sum_c pi_c N(z; mu_c, diag(exp(logvar_c))) over n_clusters components.

    The encoder / decoder are BasicVAE's. The pretraining stage trains them alone
    (`pretrain_loss`) in this same module before the mixture is fitted, so no weights are copied.
    Full size (hidden [512, 256], 15 clusters): 169,879,567 parameters, pi, mu_c, logvar_c included.
    """

    Settings = VaDESettings
    prior_parameters = ("pi_logits", "mu_c", "logvar_c")  # what pretraining leaves alone

    def __init__(self, input_shape: tuple[int, int], latent_dim: int, hidden_dims: list[int],
                 dropout: float, n_clusters: int, beta: float = 1.0, kl_warmup_epochs: int = 0) -> None:
        super().__init__(input_shape, latent_dim, hidden_dims, dropout, beta, kl_warmup_epochs)
        # Unconstrained mixture logits (softmax -> pi), as mori97/VaDE does.
        self.pi_logits = nn.Parameter(torch.zeros(n_clusters))
        self.mu_c = nn.Parameter(torch.randn(n_clusters, latent_dim) * 0.1)
        self.logvar_c = nn.Parameter(torch.zeros(n_clusters, latent_dim))


    def before_fit(self, setup: FitSetup) -> dict[str, str]:
        """Autoencoder pretraining and the mixture fitted to its latent means, once per settings
        (model.pretrain_epochs > 0; components.training.pretraining)."""
        if setup.config.model.pretrain_epochs <= 0:
            return {}
        from components.training.pretraining import pretrain_and_init_mixture  # late: it imports models

        path = pretrain_and_init_mixture(self, setup.loader, setup.config, setup.device, setup.precision,
                                         setup.directory, setup.cache_digest, setup.log_metrics)
        return {"pretrained_state": str(path)}

    @property
    def n_clusters(self) -> int:
        return self.pi_logits.shape[0]

    def log_prior_joint(self, z: Tensor) -> Tensor:
        """log pi_c + log N(z; mu_c, var_c) -> [B, K], float32."""
        logvar_c = self.logvar_c.float().clamp(*LOGVAR_RANGE)
        log_pi = F.log_softmax(self.pi_logits.float(), dim=0)
        diff = z.float()[:, None, :] - self.mu_c.float()[None]
        log_normal = -0.5 * (math.log(2 * math.pi) + logvar_c[None] + diff.pow(2) / logvar_c.exp()[None])
        return log_pi[None] + log_normal.sum(dim=2)

    def responsibilities(self, z: Tensor) -> Tensor:
        """gamma = q(c | x) ~ p(c | z), computed with log-sum-exp -> [B, K]."""
        return F.softmax(self.log_prior_joint(z), dim=1)

    def vade_kl(self, out: VAEOutput) -> Tensor:
        """KL(q(z, c | x) || p(z, c)) of Jiang et al. (2017), eq. 12 without the reconstruction -> [B]."""
        mu, logvar = out.mu.float(), out.logvar.float()
        logvar_c = self.logvar_c.float().clamp(*LOGVAR_RANGE)
        log_gamma = F.log_softmax(self.log_prior_joint(out.z), dim=1)  # [B, K]
        gamma = log_gamma.exp()
        log_pi = F.log_softmax(self.pi_logits.float(), dim=0)
        # E_q[-log p(z | c)] under the Gaussian posterior, summed over dims, weighted by gamma.
        per_cluster = 0.5 * (math.log(2 * math.pi) + logvar_c[None]
                             + logvar.exp()[:, None, :] / logvar_c.exp()[None]
                             + (mu[:, None, :] - self.mu_c.float()[None]).pow(2) / logvar_c.exp()[None]
                             ).sum(dim=2)
        cross = (gamma * per_cluster).sum(dim=1)
        cluster_term = (gamma * (log_gamma - log_pi[None])).sum(dim=1)  # KL(gamma || pi)
        entropy = 0.5 * (math.log(2 * math.pi) + 1 + logvar).sum(dim=1)  # H[q(z | x)]
        return cross + cluster_term - entropy

    def loss(self, batch: Batch, out: VAEOutput, epoch: int) -> dict[str, Tensor]:
        recon = self.reconstruction_error(out.recon, batch["mel"]).mean()
        kl = self.vade_kl(out).mean()
        return {"total": recon + self.kl_weight(epoch) * kl, "recon": recon, "kl": kl}

    def pretrain_loss(self, batch: Batch) -> dict[str, Tensor]:
        """The autoencoder stage: reconstruct from the latent mean, no KL, no mixture."""
        mu, _ = self.encode(batch)
        recon = self.reconstruction_error(self.decode(mu, batch), batch["mel"]).mean()
        return {"total": recon, "recon": recon}

    @torch.no_grad()
    def init_mixture(self, latents: np.ndarray, seed: int = 0) -> None:
        """Fit a diagonal GMM to pretrained latent means [N, latent] and copy it in."""
        from sklearn.mixture import GaussianMixture

        k = min(self.n_clusters, len(latents))
        gmm = GaussianMixture(n_components=k, covariance_type="diag", reg_covar=1e-4,
                              random_state=seed).fit(latents)
        weights = np.full(self.n_clusters, 1e-6)
        weights[:k] = gmm.weights_
        self.pi_logits.copy_(torch.as_tensor(np.log(weights / weights.sum()), dtype=torch.float32))
        self.mu_c[:k] = torch.as_tensor(gmm.means_, dtype=torch.float32)
        # reg_covar 1e-4 alone is log -9.2: below the floor, where the clamp would freeze it.
        self.logvar_c[:k] = torch.as_tensor(np.clip(np.log(gmm.covariances_), *LOGVAR_RANGE),
                                            dtype=torch.float32)

    @torch.no_grad()
    def constrain_(self) -> None:
        self.logvar_c.clamp_(*LOGVAR_RANGE)

    @torch.no_grad()
    def assign(self, batch: Batch) -> Tensor:
        """Its own clustering: argmax of the responsibilities at the latent mean -> [B]."""
        return self.responsibilities(self.encode(batch)[0]).argmax(dim=1)
