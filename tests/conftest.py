"""Shared fixtures: the real config shrunk to tiny shapes, a tiny real-audio corpus, a temp MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from components.config import load_config
from corpora.demo_corpus import generate_demo_corpus

# 16 mel bins, 2 s windows with a 1 s hop: logic at tiny cost. Songs of 31-35 s give ~30 windows.
TINY = [
    "features.n_mels=16", "features.window_seconds=2.0", "features.hop_seconds=1.0",
    "features.min_tail_seconds=0.5", "features.n_fft=512", "features.hop_length=256",
    "model.latent_dim=8", "train.batch_size=8", "train.epochs=2", "train.kl_warmup_epochs=1",
    "tracking.system_metrics=false", "data.decode_workers=1",
    # 12-song corpora: 4 songs each in train, val and test hold all 4 languages and 3 genres.
    "data.val_fraction=0.3", "data.test_fraction=0.3",
]


def tiny_overrides(tmp: Path, *extra: str) -> list[str]:
    """TINY plus cache / checkpoint folders inside tmp, so tests never touch the project's."""
    return [*TINY, f"data.cache_dir={tmp / 'cache'}", f"train.checkpoint_dir={tmp / 'checkpoints'}",
            *extra]


def tune_args(tmp_path: Path, corpus: Path, model: str = "basic_vae", *extra: str) -> list[str]:
    """pipelines.tune arguments: tiny shapes, the corpus, the default kind of Optuna storage (a
    journal file) in tmp_path unless extra sets tune.storage."""
    hidden = "[16,8]" if model == "basic_vae" else "[8,16]"
    overrides = tiny_overrides(tmp_path, f"model.hidden_dims={hidden}", f"data.source={corpus}",
                               f"tune.storage={tmp_path / 'optuna.log'}", *extra)
    args = ["--model", model]
    for item in overrides:
        key, value = item.split("=", 1)
        args += [f"--{key}", value]
    return args


@pytest.fixture(autouse=True)
def _mlflow_environment_restored():
    """mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID; left behind, it sends the next test's
    runs (and its subprocesses') to an experiment id of another store."""
    saved = {key: value for key, value in os.environ.items() if key.startswith("MLFLOW_")}
    yield
    for key in [key for key in os.environ if key.startswith("MLFLOW_") and key not in saved]:
        del os.environ[key]
    os.environ.update(saved)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """12 real songs (one per language x genre) in wav/flac/ogg, with metadata.csv and lyrics."""
    return generate_demo_corpus(tmp_path_factory.mktemp("corpus") / "demo", songs_per_cell=1,
                                min_seconds=31, max_seconds=35)


@pytest.fixture()
def tiny_config(tmp_path):
    def make(model: str = "conv_vae", *extra: str) -> dict:
        hidden = "[8,16]" if model != "basic_vae" else "[16,8]"
        lyrics = ["model.lyrics_dim=16", "model.attention_heads=2"] if model == "multimodal" else []
        return load_config(model, tiny_overrides(tmp_path, f"model.hidden_dims={hidden}", *lyrics, *extra))
    return make


@pytest.fixture()
def mlflow_store(tmp_path, monkeypatch):
    """A real SQLite tracking store in a temp dir, with file artifacts beside it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # default artifact root ./mlruns lands in tmp
    import mlflow
    from mlflow.tracking import fluent

    mlflow.set_tracking_uri(uri)  # the fluent API keeps a URI set by an earlier test otherwise
    # ... and the experiment id an earlier test's set_experiment chose, which does not exist in
    # this fresh store ("No Experiment with id=1"): start from the store's default experiment.
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    yield uri
    mlflow.set_tracking_uri(None)


def write_tone(path: Path, seconds: float, sr: int = 22050, channels: int = 1,
               amplitude: float = 0.5, subtype: str | None = None) -> Path:
    """A real audio file holding a tone (amplitude 0 writes silence)."""
    t = np.arange(int(seconds * sr)) / sr
    mono = amplitude * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    data = np.repeat(mono[:, None], channels, axis=1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data if channels > 1 else data[:, 0], sr, subtype=subtype)
    return path
