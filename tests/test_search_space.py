"""Search spaces: every model has a valid one; bad files fail naming the file and key."""

from __future__ import annotations

import optuna
import pytest

from components.config import ConfigError, flatten, load_config
from components.models import MODELS
from components.tracking.search_space import load_search_space, suggest_values


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_has_a_valid_space_whose_samples_load_as_config(model):
    parameters = load_search_space(model)
    assert {"train.lr", "model.latent_dim", "model.dropout", "train.kl_warmup_epochs"} <= {
        p.key for p in parameters}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(3):
        trial = study.ask()
        values = suggest_values(trial, parameters)
        config = flatten(load_config(model, values=values).to_dict())
        for parameter in parameters:
            value = config[parameter.key]
            assert value == values[parameter.key] and type(value) is type(values[parameter.key])
            if parameter.kind == "categorical":
                assert value in parameter.choices
            else:
                assert parameter.low <= value <= parameter.high
                assert value == pytest.approx(trial.params[parameter.key])


def test_model_specific_keys_are_searched():
    keys = {m: {p.key for p in load_search_space(m)} for m in ("beta_vae", "vade", "multimodal")}
    assert "model.beta" in keys["beta_vae"] and "model.n_clusters" in keys["vade"]
    assert {"model.fusion", "model.audio_weight", "model.lyrics_weight"} <= keys["multimodal"]


@pytest.mark.parametrize("text, message", [
    ("train.lr: {type: float, low: 0.1, high: 0.01}", r"bad.yaml: 'train.lr' has an inverted.*swap"),
    ("train.learning_rate: {type: float, low: 0.1, high: 1}",
     r"bad.yaml: unknown config key 'train.learning_rate'"),
    ("train.lr: {type: float, low: a, high: 1}", r"'train.lr' needs numeric low and high"),
    ("train.lr: {type: normal, low: 0, high: 1}", r"'train.lr' needs a mapping with type"),
    ("train.lr: {type: float, low: 0, high: 1, log: true}", r"log must be true/false and needs low > 0"),
    ("train.lr: {type: int, low: 1, high: 3}", r"'train.lr' is a float in the config"),
    ("model.fusion: {type: categorical, choices: [1, 2]}", r"choices of 'model.fusion' must have the type"),
    ("train.lr: {type: float, low: 0.1, high: 1, sigma: 2}", r"unknown field\(s\) \['sigma'\]"),
])
def test_bad_spaces_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message):
        load_search_space("multimodal", path)
