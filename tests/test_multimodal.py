"""Multimodal: the three fusions, missing lyrics, both lyrics encoders, the cached embeddings."""

from __future__ import annotations

import json
import shutil

import mlflow
import numpy as np
import pytest
import torch

from components.data.lyrics import LyricsEncoderError, embed_lyrics, tfidf_svd, transformer_embeddings
from components.data.preparation import prepare_features
from components.models import build_model
from components.settings import LyricsSettings
from pipelines.train import main as train
from tests.conftest import tiny_overrides


def _batch(model, seed=0, has=(True, False, True, True)):
    generator = torch.Generator().manual_seed(seed)
    n_mels, frames = model.input_shape
    return {"mel": torch.randn(4, 1, n_mels, frames, generator=generator),
            "lyrics": torch.randn(4, 16, generator=generator), "has_lyrics": torch.tensor(has)}


@pytest.mark.parametrize("fusion, audio", [("early", "conv"), ("late", "conv"), ("attention", "conv"),
                                           ("attention", "basic")])
def test_fusions_train_and_use_the_no_lyrics_vector(tiny_config, fusion, audio):
    torch.manual_seed(0)
    hidden = [] if audio == "conv" else ["model.hidden_dims=[16,8]"]
    model = build_model("multimodal", tiny_config("multimodal", f"model.fusion={fusion}",
                                                  f"model.audio_encoder={audio}", *hidden))
    batch = _batch(model)
    terms = model.loss(batch, model(batch), epoch=0)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["total"].backward()
    assert model.no_lyrics.grad is not None and model.no_lyrics.grad.abs().sum() > 0
    model.eval()
    changed = batch | {"lyrics": batch["lyrics"].clone()}
    changed["lyrics"][1] += 5.0  # song 1 has no lyrics: its vector must be ignored
    changed["lyrics"][0] += 5.0  # song 0 has lyrics: they must matter
    before, after = model.embed(batch), model.embed(changed)
    assert torch.equal(before[1], after[1]) and not torch.allclose(before[0], after[0])


def test_zero_lyrics_weight_makes_early_fusion_audio_only(tiny_config):
    model = build_model("multimodal", tiny_config("multimodal", "model.fusion=early",
                                                  "model.lyrics_weight=0.0")).eval()
    batch = _batch(model)
    assert torch.allclose(model.embed(batch), model.embed(batch | {"lyrics": batch["lyrics"] * 3}))


def test_tfidf_svd_is_fixed_width_deterministic_and_fitted_on_train_songs():
    texts = {"a": "مرحبا بالعالم", "b": "नमस्ते दुनिया", "c": "hello world", "d": "hola mundo"}
    first = tfidf_svd(texts, ["a", "b", "c"], dim=8, seed=0)
    assert set(first) == set(texts) and all(v.shape == (8,) for v in first.values())
    again = tfidf_svd(texts, ["a", "b", "c"], dim=8, seed=0)
    assert all(np.array_equal(first[k], again[k]) for k in texts)
    assert not np.allclose(first["a"], first["b"])


def _tiny_transformer(folder):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

    words = ["<s>", "<pad>", "</s>", "<unk>", "hello", "world", "hola", "mundo"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                            unk_token="<unk>", pad_token="<pad>").save_pretrained(folder)
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=37, max_position_embeddings=40)
    XLMRobertaModel(config).save_pretrained(folder)


def test_transformer_encoder_loads_a_local_model_and_mean_pools(tmp_path):
    _tiny_transformer(tmp_path / "tiny-xlmr")
    vectors = transformer_embeddings({"x": "hello world", "y": "hola mundo mundo"},
                                     str(tmp_path / "tiny-xlmr"), max_length=16)
    assert vectors["x"].shape == (32,) and np.isfinite(vectors["x"]).all()
    assert not np.allclose(vectors["x"], vectors["y"])


def test_missing_transformer_says_how_to_provide_it_or_switch(tmp_path):
    with pytest.raises(LyricsEncoderError, match="not on this machine.*lyrics.encoder=tfidf_svd"):
        transformer_embeddings({"x": "hello"}, str(tmp_path / "absent-model"), max_length=8)


def test_lyrics_are_embedded_once_and_bad_lyrics_reported(corpus, tmp_path, tiny_config):
    data = tmp_path / "data"
    shutil.copytree(corpus.parent, data)
    broken = sorted((data / "lyrics").glob("*.txt"))[0]
    broken.write_bytes(b"\xff\xfe caf\xe9 \x81")  # not UTF-8
    cache = prepare_features(tiny_config("multimodal", f"data.source={data / 'metadata.csv'}"))
    stored = json.loads((cache.path / "lyrics.json").read_text(encoding="utf-8"))
    assert "not UTF-8" in stored[broken.stem]["problem"] and cache.manifest["songs_without_lyrics"] == 1
    settings = LyricsSettings(encoder="tfidf_svd", model="", dim=8, max_length=8)
    vectors, dim = embed_lyrics(cache, settings, seed=0)
    assert dim == 8 and broken.stem not in vectors and len(vectors) == 11
    files = list(cache.path.glob("lyrics-*.npz"))
    assert len(files) == 1
    made = files[0].stat().st_mtime_ns
    again, _ = embed_lyrics(cache, settings, seed=0)
    assert files[0].stat().st_mtime_ns == made
    assert np.array_equal(again["arabic_pop_00"], vectors["arabic_pop_00"])


@pytest.mark.slow
def test_multimodal_run_end_to_end(tmp_path, corpus, mlflow_store):
    overrides = tiny_overrides(tmp_path, "model.hidden_dims=[8,16]", "model.attention_heads=2",
                               "lyrics.dim=16", "train.epochs=1")
    run = mlflow.get_run(train(["--model", "multimodal", "--data", str(corpus),
                                "--overrides", " ".join(overrides)]))
    assert run.info.status == "FINISHED"
    assert run.data.params["model.lyrics_dim"] == "16" and run.data.params["lyrics.encoder"] == "tfidf_svd"
    assert "test/genre/nmi" in run.data.metrics and "train/recon_lyrics" in run.data.metrics
