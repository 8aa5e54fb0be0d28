"""VaDE: its ELBO against a direct computation, the mixture initialisation and the pretraining stage."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from components.models import build_model
from components.models.base import VAEOutput
from pipelines.train import main as train
from tests.conftest import tiny_overrides


def _vade(tiny_config, *extra):
    return build_model("vade", tiny_config("vade", "model.n_clusters=3", *extra))


def test_kl_matches_a_direct_computation(tiny_config):
    torch.manual_seed(0)
    model = _vade(tiny_config)
    with torch.no_grad():
        model.mu_c.normal_()
        model.logvar_c.uniform_(-1, 1)
        model.pi_logits.normal_()
    mu, logvar = torch.randn(5, 8), torch.randn(5, 8) * 0.3
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    out = VAEOutput(recon=torch.zeros(5), mu=mu, logvar=logvar, z=z)

    # Direct: gamma = p(c | z) from Bayes' rule, then
    # KL(q(z,c|x) || p(z,c)) = sum_c gamma_c KL(q(z|x) || p(z|c)) + KL(gamma || pi).
    pi = torch.softmax(model.pi_logits, 0)
    components = Normal(model.mu_c[None], (0.5 * model.logvar_c).exp()[None])
    joint = pi[None] * components.log_prob(z[:, None]).sum(-1).exp()
    gamma = joint / joint.sum(1, keepdim=True)
    posterior = Normal(mu[:, None], (0.5 * logvar).exp()[:, None])
    per_cluster = kl_divergence(posterior, components).sum(-1)
    expected = (gamma * per_cluster).sum(1) + kl_divergence(Categorical(gamma), Categorical(pi[None]))
    assert torch.allclose(model.vade_kl(out), expected.detach(), rtol=1e-4, atol=1e-4)
    assert torch.allclose(model.responsibilities(z), gamma.detach(), atol=1e-5)


def test_responsibilities_stay_finite_far_from_every_cluster(tiny_config):
    model = _vade(tiny_config)
    gamma = model.responsibilities(torch.full((2, 8), 1e4))
    assert torch.isfinite(gamma).all() and torch.allclose(gamma.sum(1), torch.ones(2))


def test_mixture_initialised_from_latents_separates_blobs(tiny_config):
    model = _vade(tiny_config, "model.n_clusters=2")
    rng = np.random.default_rng(0)
    latents = np.concatenate([rng.normal(-5, 0.5, (50, 8)), rng.normal(5, 0.5, (50, 8))]).astype(np.float32)
    model.init_mixture(latents)
    assert torch.softmax(model.pi_logits, 0).detach().numpy() == pytest.approx([0.5, 0.5], abs=0.01)
    assign = model.responsibilities(torch.from_numpy(latents)).argmax(1).numpy()
    assert len(set(assign[:50])) == 1 and len(set(assign[50:])) == 1 and assign[0] != assign[-1]


@pytest.mark.slow
def test_vade_run_pretrains_once_and_scores_its_own_clusters(tmp_path, corpus, mlflow_store):
    overrides = tiny_overrides(tmp_path, "model.hidden_dims=[16,8]", "model.n_clusters=4",
                               "model.pretrain_epochs=1", "train.epochs=1")
    args = ["--model", "vade", "--data", str(corpus), "--overrides", " ".join(overrides)]
    run = mlflow.get_run(train(args))
    assert run.info.status == "FINISHED"
    assert "test/genre/own_clusters/nmi" in run.data.metrics
    assert "test/language/own_clusters/nmi_chance_p95" in run.data.metrics
    assert "pretrain/recon" in run.data.metrics
    state = run.data.tags["pretrained_state"]
    made = Path(state).stat().st_mtime_ns
    again = mlflow.get_run(train(args))
    assert again.data.tags["pretrained_state"] == state
    assert Path(state).stat().st_mtime_ns == made  # reused, not redone
    assert "pretrain/recon" not in again.data.metrics


def test_every_mixture_parameter_learns_after_initialisation(tiny_config):
    """Tight clusters give GMM variances of about reg_covar (1e-4, log -9.2), below the -8 floor of
    the clamp: initialised there, those log-variances would get no gradient and never move."""
    torch.manual_seed(0)
    model = _vade(tiny_config, "model.n_clusters=2")
    rng = np.random.default_rng(0)
    latents = np.concatenate([rng.normal(-1, 1e-3, (20, 8)), rng.normal(1, 1e-3, (20, 8))]).astype(np.float32)
    model.init_mixture(latents)
    assert model.logvar_c.min() >= -8.0
    mu = torch.from_numpy(latents[:26:2]) + 0.01  # 10 points of one cluster, 3 of the other
    out = VAEOutput(recon=torch.zeros(13), mu=mu, logvar=torch.full_like(mu, -6.0), z=mu)
    model.vade_kl(out).mean().backward()
    for name in ("pi_logits", "mu_c", "logvar_c"):
        grad = getattr(model, name).grad
        assert grad is not None and (grad != 0).all(), f"{name} has entries without gradient"
    # A step past the floor is projected back onto it, where the gradient still flows.
    with torch.no_grad():
        model.logvar_c -= 5.0
    model.constrain_()
    assert model.logvar_c.min() == -8.0
