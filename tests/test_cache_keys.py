"""Every cache key covers every input that determines what is cached: change one, the key moves."""

from __future__ import annotations

import dataclasses
from dataclasses import fields, replace
from pathlib import Path

import pytest

from components.config import load_config
from components.data.audio import FeatureSpec
from components.data.catalog import Catalog, Song
from components.data.feature_cache import input_digest, split_key
from components.data.lyrics import lyrics_key
from components.data.splits import SplitSpec
from components.training.pretraining import pretrain_key

SPEC = FeatureSpec(22050, 30.0, 20.0, 10.0, 128, 2048, 512, -60.0)


@pytest.fixture()
def catalog(tmp_path: Path) -> Catalog:
    songs = []
    for name in ("a", "b"):
        (tmp_path / f"{name}.wav").write_bytes(f"audio {name}".encode())
        (tmp_path / f"{name}.txt").write_text(f"lyrics {name}")
        songs.append(Song(name, tmp_path / f"{name}.wav", "english", "pop", tmp_path / f"{name}.txt"))
    return Catalog(songs, [], tmp_path)


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    return f"{value}x"


def test_the_feature_cache_digest_covers_audio_labels_lyrics_split_column_and_settings(catalog):
    base = input_digest(catalog, SPEC)
    first = catalog.songs[0]
    variants = {
        "language": replace(first, language="hindi"), "genre": replace(first, genre="rock"),
        "split column": replace(first, split="test"), "song id": replace(first, song_id="c"),
    }
    for what, song in variants.items():
        assert input_digest(replace(catalog, songs=[song, *catalog.songs[1:]]), SPEC) != base, what
    skipped_row = replace(catalog, skipped=[("typo", "unknown genre 'popp'")])
    assert input_digest(skipped_row, SPEC) != base, "an input row skipped before decoding"
    first.path.write_bytes(b"other audio")
    assert input_digest(catalog, SPEC) != base, "audio bytes"
    moved = input_digest(catalog, SPEC)
    first.lyrics_path.write_text("other lyrics")
    assert input_digest(catalog, SPEC) != moved, "lyrics bytes"
    for field in fields(FeatureSpec):
        changed = replace(SPEC, **{field.name: _changed(getattr(SPEC, field.name))})
        assert input_digest(catalog, changed) != input_digest(catalog, SPEC), field.name


def test_the_split_key_covers_every_split_setting():
    spec = SplitSpec(0.2, 0.2, 0, folds=5, fold=1)
    for field in fields(SplitSpec):
        changed = replace(spec, **{field.name: _changed(getattr(spec, field.name))})
        assert split_key(changed) != split_key(spec), field.name


def test_the_lyrics_key_covers_encoder_settings_split_and_seed():
    settings = load_config("multimodal").lyrics
    base = lyrics_key(settings, "split1", 0)
    for key, value in dataclasses.asdict(settings).items():
        assert lyrics_key(dataclasses.replace(settings, **{key: _changed(value)}), "split1", 0) != base, key
    assert lyrics_key(settings, "split2", 0) != base  # TF-IDF is fitted on the split's train songs
    assert lyrics_key(settings, "split1", 1) != base  # the SVD's seed


def test_the_pretraining_key_covers_data_model_seed_and_optimiser():
    config = load_config("vade")
    base = pretrain_key("cache-split", config)
    assert pretrain_key("cache-other", config) != base
    for section, key in [("model", "latent_dim"), ("model", "n_clusters"), ("model", "dropout"),
                         ("train", "lr"), ("train", "weight_decay"), ("train", "batch_size"),
                         ("train", "grad_clip")]:
        part = getattr(config, section)
        changed = dataclasses.replace(config, **{section: dataclasses.replace(
            part, **{key: _changed(getattr(part, key))})})
        assert pretrain_key("cache-split", changed) != base, f"{section}.{key}"
    assert pretrain_key("cache-split", dataclasses.replace(config, seed=1)) != base
