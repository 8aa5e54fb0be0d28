"""Configs: strict overrides, types, and pins that agree between requirements.txt and conda.yaml."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from components.config import PROJECT_ROOT, ConfigError, config_hash, load_config, parse_overrides


def test_the_report_preset_holds_the_report_training_settings():
    train = load_config("conv_vae", ["preset=report"]).train
    assert (train.batch_size, train.epochs, train.lr, train.weight_decay,
            train.early_stopping_patience, train.grad_clip, train.amp) == \
        (32, 100, 1e-4, 1e-4, 15, 0.5, True)


def test_override_changes_value_and_hash():
    base = load_config("conv_vae")
    changed = load_config("conv_vae", ["train.lr=1e-3", "model.hidden_dims=[8, 16]"])
    assert changed.train.lr == 1e-3 and changed.model.hidden_dims == [8, 16]
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


@pytest.mark.parametrize("override, message", [
    ("eval.method=kmean", "eval.method='kmean' is not one of kmeans, agglomerative, gmm"),
    ("eval.other_methods=[gmm, typo]", "eval.other_methods entry='typo' is not one of"),
    ("eval.unit=track", "eval.unit='track' is not one of window, song"),
    ("eval.folds=0", r"eval.folds=0 must be in \[1, 100\]"),
    ("train.epochs=0", "with 0 the logged model is the untrained initialisation"),
    ("train.precise_bn_batches=-1", r"train.precise_bn_batches=-1 must be in \[0, 1000000000\]"),
    ("data.val_fraction=0.0", "validation songs drive early stopping"),
    ("data.test_fraction=-0.5", r"data.test_fraction=-0.5 must be in \[0.0, 0.9\]"),
    ("data.test_fraction=0.5", "leaves no train songs"),
])
def test_protocol_typos_fail_when_the_config_loads(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("conv_vae", [override, "data.val_fraction=0.5"] if "leaves" in message
                    else [override])


@pytest.mark.parametrize("override, message", [
    ("data.val_fraction=-0.5", r"data.val_fraction=-0.5 must be in \[0.01, 0.9\]"),
    ("features.window_seconds=0", r"features.window_seconds=0.0 must be in \[0.1, 3600\]"),
    ("features.n_fft=8192", "holds .* samples at features.sample_rate=.* fewer than features.n_fft=8192"),
    ("features.n_mels=2000", r"features.n_mels=2000 must be in \[1, 1024\]"),
    ("features.hop_length=4096", "larger than features.n_fft=2048"),
    ("model.latent_dim=0", r"model.latent_dim=0 must be in \[1, "),
    ("model.hidden_dims=[8, -1]", r"model.hidden_dims entry=-1 must be in \[1, 65536\]; a layer width"),
    ("model.hidden_dims=[]", r"model.hidden_dims=\[\] must not be empty, e.g. \[32, 64, 128, 256\]"),
    ("model.dropout=1.0", r"model.dropout=1.0 must be in \[0.0, 0.99\]"),
    ("model.condition_on=mood", "model.condition_on='mood' is not one of null, genre, language"),
    ("model.fusion=concat", "model.fusion='concat' is not one of early, late, attention"),
    ("train.batch_size=0", r"train.batch_size=0 must be in \[1, "),
    ("train.lr=-0.1", r"train.lr=-0.1 must be in \["),
    ("train.lr=null", r"train.lr=null is not allowed; it takes <a number in \[1e-12, 10.0\]>; 1e-3 is the"),
    ("train.device=gpu", "train.device='gpu' is not one of auto, cpu, cuda, cuda:N"),
    ("train.compile=fast", "train.compile='fast' is not one of null, auto, default"),
    ("train.async_checkpoint=later", "train.async_checkpoint='later' is not one of auto, background"),
    ("eval.unit=songs", "did you mean song"),
    ("data.languages=[]", r"data.languages=\[\] must not be empty, e.g. \[english, spanish\], or null"),
    ("tune.pruner=medain", "tune.pruner='medain' is not one of median, hyperband, none; did you mean median"),
    ("tune.timeout=soon", "tune.timeout='soon' must be a number in"),
    ("tune.n_trials=0", r"tune.n_trials=0 must be in \[1, "),
    ("lyrics.encoder=bert", "lyrics.encoder='bert' is not one of tfidf_svd, transformer"),
])
def test_every_setting_is_checked_when_the_config_loads_with_one_line_naming_the_fix(override, message):
    import time

    started = time.perf_counter()
    with pytest.raises(ConfigError, match=message) as raised:
        load_config("multimodal", [override, *(["features.window_seconds=0.2"] if "n_fft=8192" in override
                                                 else [])])
    assert "\n" not in str(raised.value) and time.perf_counter() - started < 1.0  # torch already imported


def test_settings_that_cannot_go_together_fail_when_the_config_loads():
    with pytest.raises(ConfigError, match="train.activation_checkpointing and train.compile together"):
        load_config("conv_vae", ["train.compile=default", "train.activation_checkpointing=true"])


def _unruled(hint) -> bool:
    """Whether a type hint lets a number through without bounds (every number needs a Range)."""
    from typing import Annotated, Literal, get_args, get_origin

    from components.settings import Range

    if get_origin(hint) is Annotated:
        base, *marks = get_args(hint)
        return base in (int, float) and not any(isinstance(m, Range) for m in marks) or (
            base not in (int, float) and _unruled(base))
    if get_origin(hint) is Literal:
        return False
    return hint in (int, float) or any(_unruled(option) for option in get_args(hint))


def test_every_setting_says_what_it_takes_and_defaults_yaml_holds_every_shared_key():
    from components.config import defaults, flatten
    from components.models import MODELS
    from components.settings import Experiment, keys

    assert set(flatten(defaults())) == set(keys(Experiment))
    for name, model in MODELS.items():  # an architecture's own keys: typed in its own Settings class
        unruled = [key for key, hint in keys(Experiment, {"model": model.Settings}).items() if _unruled(hint)]
        assert not unruled, f"{name}: numbers without a Range: {unruled}"


def test_an_architecture_reads_only_its_own_settings():
    assert load_config("vade").model.n_clusters == 15
    assert not hasattr(load_config("conv_vae").model, "n_clusters")
    with pytest.raises(ConfigError, match="unknown config key 'model.n_clusters'"):
        load_config("conv_vae", ["model.n_clusters=4"])
    with pytest.raises(ConfigError, match="model.fusion='concat' is not one of early, late, attention"):
        load_config("multimodal", ["model.fusion=concat"])


def test_a_protocol_typo_stops_training_before_any_data_is_read(tmp_path, corpus, mlflow_store):
    from pipelines.train import main as train
    from tests.conftest import tiny_overrides

    overrides = tiny_overrides(tmp_path, "eval.method=kmean")
    with pytest.raises(ConfigError, match="eval.method"):
        train(["--model", "conv_vae", "--data", str(corpus), "--overrides", " ".join(overrides)])
    assert not (tmp_path / "cache").exists()  # failed at load, before prepare


def test_presets_apply_over_the_model_file_and_under_explicit_overrides() -> None:
    report = load_config("conv_vae", ["train.lr=3e-4", "preset=report"])
    assert report.preset == "report"
    assert report.train.lr_fan_in_reference is None and report.train.batch_size == 32
    assert report.train.lr == 3e-4  # an explicit override wins, whatever its position
    both = load_config("vade", ["preset=report,cpu"])
    assert (both.features.n_mels, both.features.hop_length) == (64, 1024)
    assert both.model.n_clusters == 15  # the model's own file still applies
    assert load_config("conv_vae").features.n_mels == 128  # the report's features stay the default


@pytest.mark.parametrize("preset, message", [
    ("reprt", "Did you mean report"),
    ("[report]", r"preset '\[report\]' does not exist.*Did you mean report")])
def test_an_unknown_preset_is_refused_with_the_list(preset: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("conv_vae", [f"preset={preset}"])


@pytest.mark.parametrize("entry, arguments, message", [
    ("train", ["--model", "vade", "--eval.method", "kmean"],
     "eval.method='kmean' is not one of kmeans, agglomerative, gmm; did you mean kmeans?"),
    ("tune", ["--model", "vade", "--tune.pruner", "medain"], "tune.pruner='medain' is not one of median"),
    ("prepare", ["--model", "vade", "--model.n_clusters", "1"], r"model.n_clusters=1 must be in [2, "),
    ("train", ["--model", "multimodal", "--model.audio_encoder", "convv"],
     "model.audio_encoder='convv' is not one of conv, basic; did you mean conv?"),
])
def test_a_command_line_typo_fails_before_torch_or_mlflow_is_imported(entry, arguments, message):
    import subprocess
    import sys

    code = (f"import sys\nfrom pipelines.{entry} import main\n"
            f"try:\n    main({arguments!r})\n"
            f"except Exception as err:\n    print(type(err).__name__, err)\n"
            f"print(sorted({{'torch', 'mlflow', 'optuna', 'librosa'}} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=60).stdout
    assert f"ConfigError override: {message}" in out
    assert out.strip().endswith("[]"), out  # none of the heavy libraries was loaded to say so


def test_each_architecture_s_settings_read_from_its_source_are_its_settings_class():
    from components.models import MODELS
    from components.models.settings_source import settings_from_source
    from components.settings import keys

    for name in MODELS:
        real = MODELS[name].Settings
        read = settings_from_source(f"{MODELS[name].__module__}:{MODELS[name].__name__}")
        assert read is not None, name
        shown = {k: repr(v) for k, v in keys(real).items()}
        assert {k: repr(v) for k, v in keys(read).items()} == shown, name
        assert [f.default for f in dataclasses.fields(read)] == [f.default for f in dataclasses.fields(real)]
