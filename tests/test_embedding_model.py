"""The served model: tiny real training runs logged as pyfunc, loaded back, compared with the
training model's own latent means, fed audio files, and served over HTTP from the registry."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from components.config import experiment, load_config
from components.data.dataset import WindowDataset
from components.data.lyrics import embed_lyrics
from components.data.preparation import prepare_features
from components.evaluation.clustering import kmeans
from components.evaluation.scoring import Protocol, latent_means, protocol_scores, song_ids
from components.models import adapt_to_data, build_model
from components.tracking.embedding_model import EmbeddingModel, InputError, build_embedding_model
from components.training import checkpoint
from components.training.trainer import choose_precision
from pipelines.train import main as train
from tests.conftest import tiny_overrides

CPU = torch.device("cpu")
FP32 = choose_precision(CPU, amp=False)
# float32 everywhere, so served (CPU float32) and training numbers agree to rounding on any CPU.
EXTRA = ["train.epochs=1", "train.amp=false", "eval.other_methods=[]"]
HIDDEN = {"basic_vae": "[16,8]", "vade": "[16,8]"}  # conv models: [8,16]


def _overrides(root: Path, model: str) -> list[str]:
    extra = [f"model.hidden_dims={HIDDEN.get(model, '[8,16]')}", *EXTRA]
    if model == "multimodal":
        extra += ["model.attention_heads=2"]
    if model == "vade":
        extra += ["model.pretrain_epochs=1"]
    return tiny_overrides(root, *extra)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[Path]:
    """One SQLite store and one feature cache for the module: each architecture trains once."""
    root = tmp_path_factory.mktemp("embedding")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        for var in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
            patch.delenv(var, raising=False)
        patch.chdir(root)  # artifacts land under root/mlruns
        mlflow.set_tracking_uri(uri)
        yield root
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def trained(store, corpus) -> Callable[[str], str]:
    """model name -> run id of a finished tiny training run (trained on first use)."""
    runs: dict[str, str] = {}

    def get(model: str) -> str:
        if model not in runs:
            runs[model] = train(["--model", model, "--data", str(corpus),
                                 "--overrides", " ".join(_overrides(store, model))])
        return runs[model]
    return get


def _training_model(store: Path, run_id: str) -> tuple[torch.nn.Module, dict]:
    """The run's best-validation weights, rebuilt from its checkpoint: what training evaluated."""
    saved = checkpoint.load(store / "checkpoints" / run_id / checkpoint.BEST)
    config = experiment(saved["config"])
    model = build_model(config.model.name, config)
    model.load_state_dict(saved["model"])
    return model.eval(), config


def _raw_windows(dataset: WindowDataset) -> np.ndarray:
    """[N, 1, n_mels, T] float32 dB, as the cache holds them (what a user computes with log_mel)."""
    return np.asarray(dataset.cache.windows[dataset.row_ids], np.float32)[:, None]


@pytest.mark.slow
def test_served_embedding_is_the_training_models_latent_means(store, trained):
    run_id = trained("basic_vae")
    run = mlflow.get_run(run_id)
    served = mlflow.pyfunc.load_model(run.data.tags["model_uri"])
    assert served.metadata.get_input_schema().input_names() == ["mel"]
    assert served.metadata.get_output_schema().input_names() == ["embedding", "cluster_genre",
                                                                 "cluster_language"]
    model, config = _training_model(store, run_id)
    cache = prepare_features(config)
    val = WindowDataset(cache, "val")
    expected, labels, _ = latent_means(model, val, CPU, FP32, 8)
    out = served.predict({"mel": _raw_windows(val)})
    assert out["embedding"].dtype == np.float32 and out["embedding"].shape == (len(val), 8)
    np.testing.assert_allclose(out["embedding"], expected, atol=1e-5)
    # The run's logged scores come back from the served embeddings.
    songs = song_ids(cache, labels.pop("row"))
    rescored = protocol_scores(out["embedding"], labels, songs, Protocol.from_config(config), "val",
                               seed=config.seed)
    for key in ("val/genre/nmi", "val/genre/nmi_p_value", "val/genre/window/nmi_chance_p95"):
        assert rescored[key] == pytest.approx(run.data.metrics[key], abs=1e-4)

    train_set = WindowDataset(cache, "train")
    train_means, _, _ = latent_means(model, train_set, CPU, FP32, 8)
    train_out = served.predict(_raw_windows(train_set))  # a bare array: the one input is "mel"
    for task, k in (("genre", 3), ("language", 4)):
        ids = train_out[f"cluster_{task}"]
        assert ids.dtype == np.int64 and set(ids) <= set(range(k))
        # Nearest centroid = the KMeans (same k, same seed) fitted on the train latent means.
        fitted = kmeans(k, config.seed).fit(train_means)
        assert np.array_equal(ids, fitted.labels_), task


def test_cvae_needs_its_label_and_uses_it(store, trained):
    run_id = trained("cvae_genre")
    served = mlflow.pyfunc.load_model(mlflow.get_run(run_id).data.tags["model_uri"])
    assert served.metadata.get_input_schema().input_names() == ["mel", "label"]
    assert served.metadata.metadata["vocab"]["genre"] == ["hiphop", "pop", "rock"]
    model, config = _training_model(store, run_id)
    val = WindowDataset(prepare_features(config), "val")
    mel, genre = _raw_windows(val), val.labels["genre"]

    with pytest.raises(mlflow.exceptions.MlflowException, match=r"missing inputs \['label'\]"):
        served.predict({"mel": mel})  # MLflow's own schema check comes first
    python_model = served.unwrap_python_model()
    with pytest.raises(InputError, match=r'missing input "label": this cvae_genre model is conditioned '
                                         r"on genre and needs the class index .*0=hiphop, 1=pop, 2=rock"):
        python_model.predict(None, {"mel": mel})
    with pytest.raises(InputError, match='input "label" holds 7'):
        python_model.predict(None, {"mel": mel[:2], "label": np.array([0, 7])})

    expected, _, _ = latent_means(model, val, CPU, FP32, 8)
    out = served.predict({"mel": mel, "label": genre})
    np.testing.assert_allclose(out["embedding"], expected, atol=1e-5)
    other = served.predict({"mel": mel, "label": (genre + 1) % 3})["embedding"]
    assert not np.allclose(other, expected, atol=1e-3), "the label must change the embedding"


def test_embed_audio_gives_one_row_per_file_and_names_a_bad_file(store, trained, corpus, tmp_path):
    served = mlflow.pyfunc.load_model(mlflow.get_run(trained("basic_vae")).data.tags["model_uri"])
    python_model = served.unwrap_python_model()
    metadata = pd.read_csv(corpus).iloc[[0, 1, 2]]  # wav, flac, ogg; corpus is the metadata.csv
    paths = [corpus.parent / p for p in metadata.path]
    frame = python_model.embed_audio(paths)
    assert list(frame.path) == [str(p) for p in paths]
    assert list(frame.columns[:3]) == ["path", "windows", "embedding"]
    # Each song's row = the mean of the served embeddings of its cached windows (same decode).
    cache = prepare_features(load_config("basic_vae", _overrides(store, "basic_vae")
                                         + [f"data.source={corpus}"]))
    for row, song in zip(frame.itertuples(), metadata.song_id):
        rows = cache.rows[cache.rows.song_id == song].row.to_numpy()
        windows = np.asarray(cache.windows[rows], np.float32)[:, None]
        assert row.windows == len(rows)
        np.testing.assert_allclose(row.embedding, served.predict(windows)["embedding"].mean(0), atol=1e-5)
    assert set(frame.cluster_genre) <= {0, 1, 2} and set(frame.cluster_language) <= {0, 1, 2, 3}

    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file" * 50)
    with pytest.raises(InputError, match=re.escape(f"{broken}: cannot be decoded")):
        python_model.embed_audio([paths[0], broken])
    with pytest.raises(InputError, match="missing.ogg: cannot be read"):
        python_model.embed_audio([tmp_path / "missing.ogg"])


def _untrained(store: Path, corpus: Path, name: str):
    """An untrained tiny model on the module's cache, its served model and lyrics (no MLflow)."""
    config = load_config(name, _overrides(store, name) + [f"data.source={corpus}"])
    cache = prepare_features(config)
    lyrics = embed_lyrics(cache, config.lyrics, config.seed) if name == "multimodal" else None
    config = adapt_to_data(config, cache.vocab, lyrics[1] if lyrics else None)
    torch.manual_seed(0)
    vae = build_model(name, config).eval()
    served, example = build_embedding_model(vae, cache, config, lyrics, CPU, FP32)
    return vae, served, example, WindowDataset(cache, "val", lyrics)


def test_vade_returns_its_own_clusters_and_survives_save_and_load(store, corpus, tmp_path):
    vae, served, example, val = _untrained(store, corpus, "vade")
    assert list(served.output_spec()) == ["embedding", "cluster_genre", "cluster_language", "cluster_model"]
    batch = val.__getitems__(list(range(len(val))))
    out = served.predict(None, {"mel": _raw_windows(val)})
    np.testing.assert_allclose(out["embedding"], vae.embed(batch).numpy(), atol=1e-5)
    assert np.array_equal(out["cluster_model"], vae.assign(batch).numpy())
    served.save(tmp_path / "state.pt")
    loaded = EmbeddingModel()
    loaded.load(tmp_path / "state.pt")
    again = loaded.predict(None, {"mel": _raw_windows(val)})
    assert all(np.array_equal(again[k], out[k]) for k in out)
    assert set(example) == {"mel"} and example["mel"].shape == (1, 1, 16, 173)


def test_multimodal_takes_lyrics_and_treats_zero_rows_as_none(store, corpus):
    vae, served, example, val = _untrained(store, corpus, "multimodal")
    assert set(served.input_spec()) == {"mel", "lyrics"} and example["lyrics"].shape == (1, 64)
    batch = val.__getitems__(list(range(len(val))))
    assert batch["has_lyrics"].any()
    mel, lyrics = _raw_windows(val), batch["lyrics"].numpy()
    with_lyrics = served.predict(None, {"mel": mel, "lyrics": lyrics})["embedding"]
    np.testing.assert_allclose(with_lyrics, vae.embed(batch).numpy(), atol=1e-5)
    without = vae.embed(batch | {"has_lyrics": torch.zeros(len(val), dtype=torch.bool)}).numpy()
    np.testing.assert_allclose(served.predict(None, {"mel": mel})["embedding"], without, atol=1e-5)
    zeros = np.zeros_like(lyrics)
    np.testing.assert_allclose(served.predict(None, {"mel": mel, "lyrics": zeros})["embedding"], without,
                               atol=1e-5)
    with pytest.raises(InputError, match=r'input "lyrics" has shape \[2, 3\]; expected \[2, 64\]'):
        served.predict(None, {"mel": mel[:2], "lyrics": np.zeros((2, 3), np.float32)})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.slow
def test_champion_alias_is_served_over_http(store, trained):
    model_uri = mlflow.get_run(trained("basic_vae")).data.tags["model_uri"]
    version = mlflow.register_model(model_uri, "served_basic_vae")
    mlflow.MlflowClient().set_registered_model_alias("served_basic_vae", "champion", version.version)
    example = json.loads((Path(mlflow.artifacts.download_artifacts(model_uri))
                          / "serving_input_example.json").read_text())
    assert list(example) == ["inputs"] and list(example["inputs"]) == ["mel"]
    local = mlflow.pyfunc.load_model("models:/served_basic_vae@champion").predict(
        {"mel": np.asarray(example["inputs"]["mel"], np.float32)})

    port = _free_port()
    bin_dir = Path(sys.executable).parent
    env = os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}"}  # MLFLOW_TRACKING_URI: the store
    log = (store / "serve.log").open("w")
    server = subprocess.Popen(
        [str(bin_dir / "mlflow"), "models", "serve", "-m", "models:/served_basic_vae@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        cwd=store, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            assert server.poll() is None, (store / "serve.log").read_text()[-3000:]
            assert time.time() < deadline, "server not up after 120 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as ping:
                    if ping.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        status, answer = _post(f"http://127.0.0.1:{port}/invocations", example)
        assert status == 200, answer
        predictions = answer["predictions"]
        assert set(predictions) == {"embedding", "cluster_genre", "cluster_language"}
        np.testing.assert_allclose(np.asarray(predictions["embedding"], np.float32), local["embedding"],
                                   atol=1e-5)
        assert predictions["cluster_genre"] == local["cluster_genre"].tolist()
        assert predictions["cluster_language"] == local["cluster_language"].tolist()
        status, answer = _post(f"http://127.0.0.1:{port}/invocations", {"inputs": {"mel": [[1.0, 2.0]]}})
        assert status == 400 and "shape" in answer["message"], answer
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the uvicorn workers it started
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
