"""Every registered architecture: report parameter counts, shapes, finite loss terms and gradients."""

from __future__ import annotations

import pytest
import torch

from components.config import EXPERIMENTS_DIR, ConfigError, load_config
from components.models import MODELS, build_model, count_parameters
from components.models.base import gaussian_kl
from components.models.blocks import fit_to

REPORT_PARAMETERS = {"basic_vae": 5_488_032, "conv_vae": 64_458_049, "beta_vae": 64_458_049,
                     "cvae_language": 69_709_761, "cvae_genre": 69_709_729, "vade": 169_879_567}


@pytest.mark.parametrize("name", sorted(REPORT_PARAMETERS))
def test_full_size_parameter_count_matches_report(name):
    assert count_parameters(build_model(name)) == REPORT_PARAMETERS[name]



def test_full_size_conv_decoder_is_padded_from_1280_to_1292_frames():
    with pytest.warns(UserWarning, match="128x1280.*128x1292"):
        model = build_model("conv_vae")
    assert model.map_shape == (256, 8, 80)
    assert model.decoded_shape == (128, 1280) and model.reconstructed_features == 163_840


@pytest.mark.parametrize("name", ["conv_vae", "beta_vae", "cvae_genre", "cvae_language", "multimodal"])
def test_padded_frames_are_neither_fitted_nor_counted(name, tiny_config):
    """The tiny conv decoder makes 172 of 173 frames; the last is an edge copy. The loss sees the
    172 real frames only: whatever the target holds in frame 173 changes neither the loss nor
    any gradient."""
    torch.manual_seed(0)
    model = build_model(name, tiny_config(name)).eval()
    assert model.decoded_shape == (16, 172) and model.input_shape == (16, 173)
    batch = {"mel": torch.randn(3, 1, 16, 173), "genre": torch.tensor([0, 1, 2]),
             "language": torch.tensor([0, 1, 2]), "lyrics": torch.randn(3, 16),
             "has_lyrics": torch.tensor([True, True, True])}
    out = model(batch)
    changed = {**batch, "mel": batch["mel"].clone()}
    changed["mel"][..., -1] += 100.0
    same = model.loss(batch, out, 0)["recon"], model.loss(changed, out, 0)["recon"]
    assert float(same[0]) == float(same[1])
    expected = (out.recon[..., :172] - batch["mel"][..., :172]).pow(2).flatten(1).sum(1)
    if name == "multimodal":
        expected = expected + (model.lyrics_decoder(out.z) - batch["lyrics"]).pow(2).sum(1)
    assert float(same[0]) == pytest.approx(float(expected.mean()), rel=1e-5)


def test_table_keys_match_experiment_files():
    files = {p.stem for p in EXPERIMENTS_DIR.glob("*.yaml")} - {"defaults"}
    assert files == set(MODELS)
    for name in MODELS:
        assert load_config(name).model.name == name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_loss_backward_on_tiny_shapes(name, tiny_config):
    torch.manual_seed(0)
    config = tiny_config(name)
    model = build_model(name, config)
    n_mels, frames = model.input_shape
    batch = {"mel": torch.randn(4, 1, n_mels, frames),
             "genre": torch.tensor([0, 1, 2, 0]), "language": torch.tensor([0, 1, 2, 3]),
             "lyrics": torch.randn(4, 16), "has_lyrics": torch.tensor([True, False, True, True])}
    out = model(batch)
    assert out.recon.shape == batch["mel"].shape
    assert out.mu.shape == out.logvar.shape == (4, config.model.latent_dim)
    terms = model.loss(batch, out, epoch=0)
    assert set(terms) >= {"total", "recon", "kl"}
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in terms.values())
    terms["total"].backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname} has non-finite gradient"
    model.eval()
    assert torch.equal(model.embed(batch), model.embed(batch))  # means, no sampling


def test_loss_scale_is_summed_per_example_and_averaged_over_batch(tiny_config):
    model = build_model("basic_vae", tiny_config("basic_vae", "model.beta=2.0",
                                                  "train.kl_warmup_epochs=4"))
    n_mels, frames = model.input_shape
    x = torch.zeros(3, 1, n_mels, frames)
    mu, logvar = torch.ones(3, 8), torch.zeros(3, 8)
    from components.models.base import VAEOutput
    out = VAEOutput(recon=torch.ones_like(x), mu=mu, logvar=logvar, z=mu)
    terms = model.loss({"mel": x}, out, epoch=1)
    assert terms["recon"].item() == pytest.approx(n_mels * frames)  # sum over features, mean over batch
    assert terms["kl"].item() == pytest.approx(0.5 * 8)  # KL of N(1, 1) vs N(0, 1), summed over 8 dims
    assert model.kl_weight(1) == pytest.approx(2.0 * 2 / 4)  # beta x warm-up
    assert terms["total"].item() == pytest.approx(n_mels * frames + 1.0 * 4)


def test_gaussian_kl_matches_torch_distributions():
    mu, logvar = torch.randn(5, 3), torch.randn(5, 3)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    expected = torch.distributions.kl_divergence(q, p).sum(1)
    assert torch.allclose(gaussian_kl(mu, logvar), expected, atol=1e-5)


def test_fit_to_crops_and_pads_explicitly():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    padded = fit_to(x, (3, 6))
    assert padded.shape == (1, 1, 3, 6) and torch.equal(padded[..., 4:], x[..., 3:].expand(1, 1, 3, 2))
    assert fit_to(x, (2, 3)).shape == (1, 1, 2, 3)


def test_beta_vae_weighs_kl_by_four():
    assert build_model("beta_vae").kl_weight(1000) == 4.0


def test_cvae_reads_its_condition_from_the_batch(tiny_config):
    torch.manual_seed(0)
    model = build_model("cvae_genre", tiny_config("cvae_genre")).eval()
    n_mels, frames = model.input_shape
    mel = torch.randn(2, 1, n_mels, frames)
    same = {"mel": mel, "genre": torch.tensor([0, 0]), "language": torch.tensor([0, 1])}
    other = same | {"genre": torch.tensor([1, 2])}
    assert not torch.allclose(model.embed(same), model.embed(other))  # genre changes the posterior
    assert torch.equal(model.embed(same), model.embed(same | {"language": torch.tensor([3, 2])}))
    with pytest.raises(ValueError, match="genre label 3 outside the 3 classes"):
        model.embed(same | {"genre": torch.tensor([0, 3])})


def test_cvae_class_count_follows_the_data(tiny_config):
    from components.models import adapt_to_data
    config = adapt_to_data(tiny_config("cvae_language"), {"language": ["a", "b"], "genre": ["x"]})
    assert build_model("cvae_language", config).embedding.num_embeddings == 2


def test_unknown_model_lists_valid_names():
    with pytest.raises(ConfigError, match="Valid models: basic_vae, beta_vae, conv_vae, cvae_genre"):
        build_model("resnet_vae")
