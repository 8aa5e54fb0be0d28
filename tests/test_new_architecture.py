"""An 8th architecture is four files and one line: its module, its entry in MODELS,
experiments/<name>.yaml and search_spaces/<name>.yaml. This test adds exactly those (the module is
the class below, the entry a MODELS item, the two YAML files in a temporary folder) and runs the
platform on it unchanged: its own settings checked when the config loads, its stage before
training, training, evaluation, the served model, and a tuning trial over its own setting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import mlflow
import pytest
import torch
from torch import nn

import components.config as config_module
from components.config import ConfigError, load_config
from components.models import MODELS
from components.models.base import VAE, FitSetup
from components.settings import ModelSettings, Range
from components.tracking import search_space
from tests.conftest import tiny_overrides, tune_args


@dataclass
class ToySettings(ModelSettings):
    width: Annotated[int, Range(1, 4096, "8 is the default")] = 8


class ToyVAE(VAE):
    """Flatten -> one hidden layer of model.width units -> mu, logvar; the same back."""

    Settings = ToySettings

    def __init__(self, input_shape: tuple[int, int], latent_dim: int, width: int, beta: float = 1.0,
                 kl_warmup_epochs: int = 0) -> None:
        super().__init__(input_shape, latent_dim, beta, kl_warmup_epochs)
        features = input_shape[0] * input_shape[1]
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(features, width), nn.ReLU())
        self.mu, self.logvar = nn.Linear(width, latent_dim), nn.Linear(width, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, width), nn.ReLU(), nn.Linear(width, features))

    def encode(self, batch):
        hidden = self.encoder(batch["mel"])
        return self.mu(hidden), self.logvar(hidden)

    def decode(self, z, batch):
        return self.decoder(z).view(-1, 1, *self.input_shape)

    def before_fit(self, setup: FitSetup) -> dict[str, str]:
        return {"toy.before_fit_batches": str(len(setup.loader))}


@pytest.fixture()
def toy_architecture(tmp_path, monkeypatch):
    monkeypatch.setitem(MODELS, "toy_vae", ToyVAE)  # the one line
    experiments, spaces = tmp_path / "experiments", tmp_path / "search_spaces"
    experiments.mkdir()
    spaces.mkdir()
    (experiments / "toy_vae.yaml").write_text("model:\n  name: toy_vae\n  latent_dim: 4\n  width: 16\n")
    (spaces / "toy_vae.yaml").write_text("model.width: {type: int, low: 4, high: 32}\n")
    monkeypatch.setattr(config_module, "EXPERIMENTS_DIR", experiments)
    monkeypatch.setattr(search_space, "SEARCH_SPACES_DIR", spaces)


@pytest.mark.slow
def test_an_eighth_architecture_runs_through_the_platform_unchanged(toy_architecture, tmp_path, corpus,
                                                                    mlflow_store):
    from pipelines import tune
    from pipelines.train import main as train

    assert load_config("toy_vae").model.width == 16
    with pytest.raises(ConfigError, match=r"model.width=0 must be in \[1, 4096\]; 8 is the default"):
        load_config("toy_vae", ["model.width=0"])

    overrides = tiny_overrides(tmp_path, "train.epochs=2")
    run_id = train(["--model", "toy_vae", "--data", str(corpus), "--overrides", " ".join(overrides)])
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["toy.before_fit_batches"].isdigit()
    assert run.data.params["model.width"] == "16" and "test/genre/nmi" in run.data.metrics
    served = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    out = served.predict({"mel": (torch.randn(2, 1, 16, 173) * 10 - 40).numpy()})
    assert out["embedding"].shape == (2, int(run.data.params["model.latent_dim"]))

    tune.main(tune_args(tmp_path, corpus, "toy_vae", "tune.n_trials=1", "train.epochs=1"))
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    trials = [r for r in runs if r.data.tags.get("optuna.study_name") == "toy_vae-genre"
              and "optuna.trial_number" in r.data.tags]
    assert len(trials) == 1 and 4 <= int(trials[0].data.params["model.width"]) <= 32
