"""The served model: log-mel windows (plus the label or lyrics an architecture needs) or audio
files in, latent embeddings and cluster ids out, as an MLflow pyfunc PythonModel."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch

from components.data.audio import FeatureSpec, SongRejected, song_windows
from components.data.dataset import TASKS, WindowDataset
from components.data.feature_cache import FeatureCache
from components.evaluation.clustering import kmeans
from components.models import model_of, model_settings
from components.models.base import VAE
from components.settings import Experiment
from components.training.trainer import Precision

CHUNK = 32  # windows per forward pass: bounds memory for large requests at full size


class InputError(ValueError):
    """A request the model cannot answer; the message names the input and what it must be."""


# The artifact name under which log_model stores the weights and settings, and the file MLflow
# runs to load the model ("models from code": no pickled Python objects in the registry).
ARTIFACT = "embedding_model"
CODE_FILE = Path(__file__).with_name("served_model.py")


class EmbeddingModel(mlflow.pyfunc.PythonModel):
    """predict({"mel": [B, 1, n_mels, T] float32 log-mel dB as components.data.audio.log_mel gives it,
    "label": [B] int64 (CVAEs: class index of the conditioned label in `vocab`),
    "lyrics": [B, lyrics_dim] float32 (multimodal; an all-zero row means "no lyrics")})
    -> {"embedding": [B, latent] float32 latent means, "cluster_genre": [B] int64,
    "cluster_language": [B] int64, and for VaDE "cluster_model": [B] int64}.

    The model normalises with the train-split statistics itself. Cluster ids are the nearest
    of k centroids (k = classes of the task) fitted by KMeans on the train split's latent means:
    ids, not class indices. `embed_audio(paths)` embeds whole files, one row per song.

    State (`save` / `load`): a torch file of tensors and plain values only (weights_only-safe):
    the VAE's state_dict, the config sections that rebuild it, normalisation, vocab, centroids.
    """

    # MLflow infers signatures only from `list[...]` hints on predict's input and warns about any
    # other hint, or about none; this model declares its signature explicitly (named tensors), so
    # the input stays unannotated and MLflow's type-hint wrapper (and its warning) is skipped, as
    # MLflow does for its own PythonModel subclasses.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        self.load(context.artifacts[ARTIFACT])

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EmbeddingModel:
        model = cls()
        model._set_state(state)
        return model

    def save(self, path: Path) -> None:
        torch.save(self._state, path)

    def load(self, path: str | Path) -> None:
        # map_location: weights saved on any device load on the CPU, the serving default.
        self._set_state(torch.load(path, map_location="cpu", weights_only=True))

    def _set_state(self, state: dict[str, Any]) -> None:
        self._state = state
        config = state["config"]
        self.name: str = config["model"]["name"]
        self.vae = model_of(model_settings(config["model"]), FeatureSpec(**config["features"]),
                            config["train"]["kl_warmup_epochs"])
        self.vae.load_state_dict(state["weights"])
        self.vae.eval()
        self.features = dict(config["features"])
        self.mel_mean = state["mel_mean"].numpy().astype(np.float32)[:, None]  # [n_mels, 1]
        self.mel_std = state["mel_std"].numpy().astype(np.float32)[:, None]
        self.vocab = {task: list(names) for task, names in state["vocab"].items()}
        self.centroids = {task: c.numpy().astype(np.float32) for task, c in state["centroids"].items()}
        self.condition_on: str | None = config["model"]["condition_on"]
        self.lyrics_dim: int | None = int(config["model"]["lyrics_dim"]) if self.vae.uses_lyrics else None
        self.has_own_clusters = hasattr(self.vae, "assign")  # VaDE's mixture components

    @property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(**self.features)

    def input_spec(self) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """The named tensors predict needs: only those this architecture uses, since MLflow makes
        every TensorSpec of a signature required."""
        n_mels, frames = self.vae.input_shape
        inputs = {"mel": (np.dtype(np.float32), (-1, 1, n_mels, frames))}
        if self.condition_on:
            inputs["label"] = (np.dtype(np.int64), (-1,))
        if self.lyrics_dim:
            inputs["lyrics"] = (np.dtype(np.float32), (-1, self.lyrics_dim))
        return inputs

    def output_spec(self) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        outputs = {"embedding": (np.dtype(np.float32), (-1, self.vae.latent_dim))}
        for key in self._cluster_keys():
            outputs[key] = (np.dtype(np.int64), (-1,))
        return outputs

    def metadata(self) -> dict[str, Any]:
        """What a caller needs to build a request: label indices and the feature settings."""
        return {"architecture": self.name, "condition_on": self.condition_on, "vocab": self.vocab,
                "lyrics_dim": self.lyrics_dim, "features": self.features}

    def _cluster_keys(self) -> list[str]:
        own = ["cluster_model"] if self.has_own_clusters else []
        return [f"cluster_{task}" for task in self.centroids] + own

    def predict(self, context: Any, model_input,
                params: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        if isinstance(model_input, np.ndarray):  # a bare mel array, as MLflow passes one-input models
            model_input = {"mel": model_input}
        if not isinstance(model_input, dict):
            raise InputError(f"expected a dict of numpy arrays with keys {sorted(self.input_spec())}, "
                             f"got {type(model_input).__name__}")
        mel = self._mel(model_input.get("mel"))
        label = self._label(model_input.get("label"), len(mel))
        lyrics = self._lyrics(model_input.get("lyrics"), len(mel))
        parts = [self._embed_chunk(mel[i:i + CHUNK], None if label is None else label[i:i + CHUNK],
                                   None if lyrics is None else lyrics[i:i + CHUNK])
                 for i in range(0, len(mel), CHUNK)]
        embedding = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, self.vae.latent_dim),
                                                                                  np.float32)
        out = {"embedding": embedding, **self.nearest_centroids(embedding)}
        if self.has_own_clusters:
            out["cluster_model"] = (np.concatenate([p[1] for p in parts]) if parts
                                    else np.zeros(0, np.int64))
        return out

    def nearest_centroids(self, embedding: np.ndarray) -> dict[str, np.ndarray]:
        """cluster_<task> [B] int64: index of the nearest train-split KMeans centroid."""
        out = {}
        for task, centroids in self.centroids.items():
            distances = ((embedding[:, None, :] - centroids[None]) ** 2).sum(axis=2)
            out[f"cluster_{task}"] = distances.argmin(axis=1).astype(np.int64)
        return out

    def _embed_chunk(self, mel: np.ndarray, label: np.ndarray | None,
                     lyrics: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        batch = {"mel": torch.from_numpy((mel - self.mel_mean) / self.mel_std)}
        if label is not None:
            batch[self.condition_on] = torch.from_numpy(label)
        if self.lyrics_dim:
            if lyrics is None:
                lyrics = np.zeros((len(mel), self.lyrics_dim), np.float32)
            batch["lyrics"] = torch.from_numpy(lyrics)
            # The learned "no lyrics" vector stands in wherever a row is all zeros.
            batch["has_lyrics"] = torch.from_numpy(np.any(lyrics != 0, axis=1))
        self.vae.eval()
        with torch.no_grad():
            embedding = self.vae.embed(batch).float().numpy()
            own = self.vae.assign(batch).numpy().astype(np.int64) if self.has_own_clusters else None
        return embedding, own

    def _mel(self, mel: Any) -> np.ndarray:
        n_mels, frames = self.vae.input_shape
        if mel is None:
            raise InputError(f'missing input "mel": log-mel windows in dB, [B, 1, {n_mels}, {frames}] '
                             f"float32, as components.data.audio.log_mel computes them")
        mel = np.asarray(mel, dtype=np.float32)
        if mel.ndim != 4 or mel.shape[1:] != (1, n_mels, frames):
            raise InputError(f'input "mel" has shape {list(mel.shape)}; expected [B, 1, {n_mels}, {frames}]'
                             f" (sample rate {self.spec.sample_rate} Hz, {self.spec.window_seconds:g} s "
                             f"windows, n_fft {self.spec.n_fft}, hop {self.spec.hop_length})")
        return np.ascontiguousarray(mel)

    def _label(self, label: Any, count: int) -> np.ndarray | None:
        if not self.condition_on:
            return None
        names = self.vocab[self.condition_on]
        meaning = (f"the class index of each window's {self.condition_on} "
                   f"({', '.join(f'{i}={n}' for i, n in enumerate(names))}), [B] int64")
        if label is None:
            raise InputError(f'missing input "label": this {self.name} model is conditioned on '
                             f"{self.condition_on} and needs {meaning}")
        label = np.asarray(label)
        if label.shape != (count,) or not np.issubdtype(label.dtype, np.integer):
            raise InputError(f'input "label" has shape {list(label.shape)} and dtype {label.dtype}; '
                             f"expected {meaning} for the {count} windows")
        if len(label) and (label.min() < 0 or label.max() >= len(names)):
            raise InputError(f'input "label" holds {int(label.max())}; expected {meaning}')
        return label.astype(np.int64)

    def _lyrics(self, lyrics: Any, count: int) -> np.ndarray | None:
        if not self.lyrics_dim or lyrics is None:
            return None
        lyrics = np.asarray(lyrics, dtype=np.float32)
        if lyrics.shape != (count, self.lyrics_dim):
            raise InputError(f'input "lyrics" has shape {list(lyrics.shape)}; expected [{count}, '
                             f"{self.lyrics_dim}] float32 lyrics embeddings (all zeros: no lyrics)")
        return lyrics

    def embed_audio(self, paths: Sequence[str | Path], labels: Sequence[str | int] | None = None,
                    lyrics: np.ndarray | None = None) -> pd.DataFrame:
        """Decode each file with the training feature settings, cut it into windows, embed them
        and average per song -> one row per file: path, windows, embedding [latent] float32,
        cluster_genre, cluster_language (and cluster_model for VaDE), all from the song mean.

        labels: CVAEs, one class name or index per file. lyrics: multimodal, optional
        [len(paths), lyrics_dim] embeddings; without them the "no lyrics" vector is used.
        """
        paths = [Path(p) for p in paths]
        if self.condition_on and (labels is None or len(labels) != len(paths)):
            raise InputError(f"labels: this {self.name} model is conditioned on {self.condition_on}; pass "
                             f"one {self.condition_on} per file (one of {self.vocab[self.condition_on]} "
                             f"or its index), {len(paths)} in all")
        if lyrics is not None:
            lyrics = self._lyrics(lyrics, len(paths))
        means = []
        counts = []
        for i, path in enumerate(paths):
            mel = self._windows(path)
            request: dict[str, np.ndarray] = {"mel": mel}
            if self.condition_on:
                request["label"] = np.full(len(mel), self._class_index(labels[i], path), np.int64)
            if lyrics is not None:
                request["lyrics"] = np.repeat(lyrics[i:i + 1], len(mel), axis=0)
            means.append(self.predict(None, request)["embedding"].mean(axis=0))
            counts.append(len(mel))
        embedding = (np.stack(means).astype(np.float32) if means
                     else np.zeros((0, self.vae.latent_dim), np.float32))
        frame = pd.DataFrame({"path": [str(p) for p in paths], "windows": counts,
                              "embedding": list(embedding), **self.nearest_centroids(embedding)})
        if self.has_own_clusters:
            with torch.no_grad():
                z = torch.from_numpy(embedding)
                frame["cluster_model"] = self.vae.responsibilities(z).argmax(dim=1).numpy().astype(np.int64)
        return frame

    def _windows(self, path: Path) -> np.ndarray:
        """[n, 1, n_mels, T] float32 dB, through the same float16 rounding as the feature cache."""
        try:
            mel, _ = song_windows(path, self.spec)
        except SongRejected as err:
            raise InputError(f"{path}: {err}") from err
        except OSError as err:  # missing or unreadable file
            raise InputError(f"{path}: cannot be read ({err.strerror or err})") from err
        return mel.astype(np.float32)[:, None]

    def _class_index(self, label: str | int, path: Path) -> int:
        names = self.vocab[self.condition_on]
        if isinstance(label, str):
            if label not in names:
                raise InputError(f"{path}: {self.condition_on} '{label}' is not one of {names}")
            return names.index(label)
        if not 0 <= int(label) < len(names):
            raise InputError(f"{path}: {self.condition_on} index {label} outside 0..{len(names) - 1}")
        return int(label)


def build_embedding_model(vae: VAE, cache: FeatureCache, config: Experiment,
                          lyrics: tuple[dict[str, np.ndarray], int] | None, device: torch.device,
                          precision: Precision) -> tuple[EmbeddingModel, dict[str, np.ndarray]]:
    """The served model of a trained VAE (a CPU copy), with per-task KMeans centroids fitted on
    the train split's latent means, and a request holding the first train window (the input
    example)."""
    # Imported here: evaluation pulls in matplotlib, which loading the served model never needs.
    from components.evaluation.scoring import latent_means

    train = WindowDataset(cache, "train", lyrics)
    means, _, _ = latent_means(vae, train, device, precision, config.train.batch_size)
    centroids = {task: kmeans(min(len(cache.vocab[task]), len(means)), config.seed)
                 .fit(means).cluster_centers_ for task in TASKS}
    state = {
        # Only what rebuilds the network: the full config may hold credentials (storage URLs).
        "config": {"model": dataclasses.asdict(config.model), "features": dataclasses.asdict(config.features),
                   "train": {"kl_warmup_epochs": config.train.kl_warmup_epochs}},
        "weights": {k: v.detach().cpu() for k, v in vae.state_dict().items()},
        "mel_mean": torch.as_tensor(cache.mel_mean, dtype=torch.float32),
        "mel_std": torch.as_tensor(cache.mel_std, dtype=torch.float32),
        "vocab": {task: list(names) for task, names in cache.vocab.items()},
        "centroids": {task: torch.as_tensor(c, dtype=torch.float32) for task, c in centroids.items()},
    }
    model = EmbeddingModel.from_state(state)
    example = {"mel": cache.read(train.row_ids[:1]).astype(np.float32)[:, None]}
    if model.condition_on:
        example["label"] = train.labels[model.condition_on][:1]
    if model.lyrics_dim:
        example["lyrics"] = train.lyrics[:1]  # zeros when the song has no lyrics
    return model, example
