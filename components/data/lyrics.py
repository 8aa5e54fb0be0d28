"""Lyrics -> one frozen embedding per song, computed once and cached beside the audio features.

Two encoders, chosen explicitly in the config (`lyrics.encoder`):
- `tfidf_svd`: character n-gram TF-IDF reduced with truncated SVD, fitted on the train songs'
  lyrics. Needs no pretrained weights: the demo and offline machines use it.
- `transformer`: a Hugging Face encoder (default xlm-roberta-base) loaded from a local path or
  the local HF cache only, never downloaded at run time; mean-pooled last hidden states.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import numpy as np

from components.data.feature_cache import FeatureCache
from components.settings import LyricsSettings


class LyricsEncoderError(RuntimeError):
    """The configured encoder cannot run here; the message says how to provide it or switch."""


def tfidf_svd(texts: dict[str, str], fit_on: list[str], dim: int, seed: int) -> dict[str, np.ndarray]:
    """Character 1-3-gram TF-IDF fitted on `fit_on` songs, SVD to at most `dim` dims, L2-normalised."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    fit_texts = [texts[s] for s in fit_on if s in texts] or list(texts.values())
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)
    fitted = vectorizer.fit_transform(fit_texts)
    components = max(1, min(dim, fitted.shape[0] - 1, fitted.shape[1] - 1))
    svd = TruncatedSVD(n_components=components, random_state=seed).fit(fitted)
    ids = list(texts)
    vectors = normalize(svd.transform(vectorizer.transform([texts[s] for s in ids])))
    padded = np.zeros((len(ids), dim), dtype=np.float32)  # a fixed width whatever the corpus size
    padded[:, :components] = vectors
    return dict(zip(ids, padded))


def load_transformer(name_or_path: str) -> tuple[Any, Any]:
    """Tokenizer and model from a local folder or the local HF cache; never from the network."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
        model = AutoModel.from_pretrained(name_or_path, local_files_only=True)
    except (OSError, ValueError) as err:
        raise LyricsEncoderError(
            f"lyrics encoder '{name_or_path}' is not on this machine ({type(err).__name__}). Either "
            f"download it where the network allows (`huggingface-cli download {name_or_path}` fills "
            f"the local HF cache) or point lyrics.model at a folder saved with save_pretrained, or "
            f"use the offline encoder: -P lyrics.encoder=tfidf_svd") from err
    return tokenizer, model.eval()


def transformer_embeddings(texts: dict[str, str], name_or_path: str, max_length: int,
                           batch_size: int = 8) -> dict[str, np.ndarray]:
    """Mean-pooled last hidden state per text (padding masked out), frozen, float32."""
    import torch

    tokenizer, model = load_transformer(name_or_path)
    ids = list(texts)
    vectors = []
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            chunk = [texts[s] for s in ids[start : start + batch_size]]
            tokens = tokenizer(chunk, padding=True, truncation=True, max_length=max_length,
                               return_tensors="pt")
            hidden = model(**tokens).last_hidden_state
            mask = tokens["attention_mask"][..., None].to(hidden.dtype)
            vectors.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().numpy())
    return dict(zip(ids, np.concatenate(vectors))) if vectors else {}


def lyrics_key(settings: LyricsSettings, split_key: str, seed: int) -> str:
    """Everything that determines the embeddings besides the cached texts: the encoder settings,
    the split (TF-IDF and SVD are fitted on its train songs) and the SVD's seed."""
    relevant = {"settings": dataclasses.asdict(settings), "split": split_key, "seed": seed}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]


def embed_lyrics(cache: FeatureCache, settings: LyricsSettings,
                 seed: int) -> tuple[dict[str, np.ndarray], int]:
    """song_id -> embedding for songs with usable lyrics, and the embedding width.

    Computed once per (cache, split, lyrics settings, seed) and stored as lyrics-<key>.npz in
    the cache folder (written atomically); songs without usable lyrics are recorded, with the
    reason, in the cache's lyrics.json.
    """
    path = cache.path / f"lyrics-{lyrics_key(settings, cache.split_key, seed)}.npz"
    if path.exists():
        stored = np.load(path)
        return {str(s): v for s, v in zip(stored["song_ids"], stored["vectors"])}, int(stored["dim"])
    texts = cache.lyrics_texts()
    train_songs = sorted(set(cache.rows.song_id[cache.rows.split == "train"]))
    if settings.encoder == "tfidf_svd":
        dim = settings.dim
        vectors = tfidf_svd(texts, train_songs, dim, seed) if texts else {}
    elif settings.encoder == "transformer":
        model = load_transformer(settings.model)[1]  # fails early, with the how-to, if absent
        dim = model.config.hidden_size
        vectors = transformer_embeddings(texts, settings.model, settings.max_length)
    else:
        raise LyricsEncoderError(
            f"lyrics.encoder '{settings.encoder}' unknown: use tfidf_svd or transformer")
    song_ids = np.array(list(vectors), dtype=str)
    matrix = (np.stack(list(vectors.values())).astype(np.float32) if vectors
              else np.zeros((0, dim), np.float32))
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
    np.savez(tmp, song_ids=song_ids, vectors=matrix, dim=dim)
    os.replace(tmp, path)
    return vectors, dim
