"""Configs: strict overrides, types, and pins that agree between requirements.txt and conda.yaml."""

from __future__ import annotations

import pytest
import yaml

from components.config import PROJECT_ROOT, ConfigError, config_hash, load_config, parse_overrides


def test_defaults_hold_the_report_training_settings():
    train = load_config("conv_vae")["train"]
    assert (train["batch_size"], train["epochs"], train["lr"], train["weight_decay"],
            train["early_stopping_patience"], train["grad_clip"], train["amp"]) == \
        (32, 100, 1e-4, 1e-4, 15, 0.5, True)


def test_override_changes_value_and_hash():
    base = load_config("conv_vae")
    changed = load_config("conv_vae", ["train.lr=1e-3", "model.hidden_dims=[8, 16]"])
    assert changed["train"]["lr"] == 1e-3 and changed["model"]["hidden_dims"] == [8, 16]
    assert config_hash(base) != config_hash(changed)


def test_unknown_key_is_rejected_with_a_suggestion():
    with pytest.raises(ConfigError, match="unknown config key 'train.learning_rate'.*train.lr"):
        load_config("conv_vae", ["train.learning_rate=0.1"])


@pytest.mark.parametrize("override", ["train.lr=abc", "train.epochs=2.5", "train.amp=1"])
def test_wrong_type_is_rejected(override):
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_config("conv_vae", [override])


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.epochs"])


def test_conda_env_carries_the_same_pins_as_requirements():
    requirements = {line.strip() for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")}
    conda = yaml.safe_load((PROJECT_ROOT / "conda.yaml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert set(pip_section) == requirements
    assert "torch==2.13.0" in requirements
