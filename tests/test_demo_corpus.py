"""The demo corpus generator: real files in three formats, labels, scripts, determinism, atomicity."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from components import demo_corpus
from components.config import ConfigError
from components.demo_corpus import GENRES, LANGUAGES, generate_demo_corpus

SMALL = {"songs_per_cell": 1, "min_seconds": 31.0, "max_seconds": 33.0}
HEADER = ["song_id", "path", "language", "genre", "lyrics_path"]
EXPECTED_FORMAT = {  # extension -> (sample rate, channels, soundfile format)
    ".wav": (22050, 1, "WAV"),
    ".flac": (44100, 2, "FLAC"),
    ".ogg": (32000, 1, "OGG"),
}


def _rows(metadata: Path) -> list[dict[str, str]]:
    with open(metadata, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return generate_demo_corpus(tmp_path_factory.mktemp("demo") / "corpus", seed=0, **SMALL)


def test_metadata_lists_every_language_genre_cell_once(small):
    with open(small, encoding="utf-8", newline="") as fh:
        assert next(csv.reader(fh)) == HEADER
    rows = _rows(small)
    assert len(rows) == 12
    assert sorted((r["language"], r["genre"]) for r in rows) == sorted(
        itertools.product(LANGUAGES, GENRES))
    assert len({r["song_id"] for r in rows}) == 12
    for r in rows:
        assert r["song_id"] == f"{r['language']}_{r['genre']}_00"
        assert r["path"] == f"audio/{r['song_id']}{Path(r['path']).suffix}"
        assert r["lyrics_path"] == f"lyrics/{r['song_id']}.txt"
        assert (small.parent / r["path"]).is_file()
        assert (small.parent / r["lyrics_path"]).is_file()


def test_audio_is_real_files_in_three_formats(small):
    rows = _rows(small)
    suffixes = {Path(r["path"]).suffix for r in rows}
    assert suffixes == set(EXPECTED_FORMAT)
    for suffix in EXPECTED_FORMAT:
        # Every format is spread over genres, so format can never stand in for a label.
        assert len({r["genre"] for r in rows if r["path"].endswith(suffix)}) >= 2
    for r in rows:
        path = small.parent / r["path"]
        info = sf.info(path)
        rate, channels, fmt = EXPECTED_FORMAT[path.suffix]
        assert (info.samplerate, info.channels, info.format) == (rate, channels, fmt)
        assert 31.0 - 0.05 <= info.duration <= 33.0 + 0.05


def test_audio_is_finite_loud_and_not_clipped(small):
    for r in _rows(small):
        audio, _ = sf.read(small.parent / r["path"], dtype="float32", always_2d=True)
        assert np.all(np.isfinite(audio))
        peak = float(np.max(np.abs(audio)))
        if r["path"].endswith(".ogg"):  # lossy: the decoded peak drifts from the encoded one
            assert 0.7 <= peak <= 1.0, (r["song_id"], peak)
        else:
            assert peak == pytest.approx(0.9, abs=1e-3), r["song_id"]
        # Music throughout: only the sparse intro may be quiet, and never near-silent.
        mono = audio.mean(axis=1)
        hop = 5 * sf.info(small.parent / r["path"]).samplerate
        blocks = mono[: len(mono) // hop * hop].reshape(-1, hop)
        rms = np.sqrt(np.mean(blocks**2, axis=1))
        assert rms[0] > 0.001 and rms[1:].min() > 0.02, (r["song_id"], rms)


def test_stereo_channels_differ(small):
    flac = next(r for r in _rows(small) if r["path"].endswith(".flac"))
    audio, _ = sf.read(small.parent / flac["path"], dtype="float32")
    assert not np.allclose(audio[:, 0], audio[:, 1], atol=1e-3)


@pytest.mark.parametrize(("language", "low", "high"), [
    ("arabic", 0x0600, 0x06FF), ("hindi", 0x0900, 0x097F),
    ("english", ord("A"), ord("z")), ("spanish", ord("A"), 0x00FF),
])
def test_lyrics_are_in_the_language_script(small, language, low, high):
    for r in (r for r in _rows(small) if r["language"] == language):
        text = (small.parent / r["lyrics_path"]).read_text(encoding="utf-8")
        letters = [ch for ch in text if not ch.isspace()]
        assert len(text.splitlines()) >= 4
        assert len(letters) >= 20
        assert all(low <= ord(ch) <= high for ch in letters), (r["song_id"], text)


def test_same_seed_gives_identical_files(small, tmp_path):
    again = generate_demo_corpus(tmp_path / "again", seed=0, **SMALL)
    first, second = _tree_bytes(small.parent), _tree_bytes(again.parent)
    assert first.keys() == second.keys()
    # Vorbis streams carry a random serial number; every other file must match byte for byte.
    for name, data in first.items():
        if not name.endswith(".ogg"):
            assert second[name] == data, name


def test_different_seeds_differ_and_songs_do_not_depend_on_corpus_size(tmp_path):
    kwargs = {"min_seconds": 31.0, "max_seconds": 31.0, "sample_rate": 8000}
    one = generate_demo_corpus(tmp_path / "one", songs_per_cell=1, seed=0, **kwargs).parent
    two = generate_demo_corpus(tmp_path / "two", songs_per_cell=2, seed=0, **kwargs).parent
    other = generate_demo_corpus(tmp_path / "other", songs_per_cell=1, seed=1, **kwargs).parent
    song = "audio/arabic_hiphop_00.wav"
    assert (one / song).read_bytes() == (two / song).read_bytes()
    assert (one / song).read_bytes() != (other / song).read_bytes()
    assert (one / "lyrics/arabic_hiphop_00.txt").read_text(encoding="utf-8") != (
        other / "lyrics/arabic_hiphop_00.txt").read_text(encoding="utf-8")
    assert len(_rows(two / "metadata.csv")) == 24


def test_second_call_returns_existing_corpus_without_rewriting(small, monkeypatch):
    before = {p: p.stat().st_mtime_ns for p in small.parent.rglob("*")}

    def must_not_render(*args, **kwargs):
        raise AssertionError("an existing corpus was regenerated")

    monkeypatch.setattr(demo_corpus, "_render", must_not_render)
    assert generate_demo_corpus(small.parent, seed=5, **SMALL) == small
    assert {p: p.stat().st_mtime_ns for p in small.parent.rglob("*")} == before


def test_an_existing_corpus_of_another_size_is_refused_not_reused(small):
    size = SMALL.get("songs_per_cell", 4)
    with pytest.raises(ConfigError, match=r"holds a demo corpus of \d+ songs.*set data.demo_dir"):
        generate_demo_corpus(small.parent, **(SMALL | {"songs_per_cell": size + 1}))


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = []
    real_render = demo_corpus._render

    def render_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real_render(*args, **kwargs)

    monkeypatch.setattr(demo_corpus, "_render", render_then_fail)
    root = tmp_path / "corpus"
    with pytest.raises(KeyboardInterrupt):
        generate_demo_corpus(root, min_seconds=31.0, max_seconds=31.0, sample_rate=8000)
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []  # the staging folder is cleaned up too

    monkeypatch.setattr(demo_corpus, "_render", real_render)
    metadata = generate_demo_corpus(root, songs_per_cell=1, min_seconds=31.0, max_seconds=31.0,
                                    sample_rate=8000)
    assert metadata == root / "metadata.csv"
    assert len(_rows(metadata)) == 12
    assert list(tmp_path.iterdir()) == [root]


def test_generates_into_an_existing_folder_that_lacks_metadata(tmp_path):
    root = tmp_path / "corpus"
    (root / "audio").mkdir(parents=True)
    (root / "audio" / "stale.wav").write_bytes(b"left over from an interrupted move")
    (root / "README").write_text("user file", encoding="utf-8")
    metadata = generate_demo_corpus(root, songs_per_cell=1, min_seconds=31.0, max_seconds=31.0,
                                    sample_rate=8000)
    assert len(_rows(metadata)) == 12
    assert not (root / "audio" / "stale.wav").exists()
    assert (root / "README").read_text(encoding="utf-8") == "user file"


@pytest.mark.parametrize("kwargs", [
    {"songs_per_cell": 0}, {"min_seconds": 0.0}, {"min_seconds": 50.0, "max_seconds": 40.0},
])
def test_rejects_impossible_settings(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_demo_corpus(tmp_path / "corpus", **kwargs)
    assert not (tmp_path / "corpus").exists()


def test_command_line_prints_metadata_path(small, capsys):
    demo_corpus.main([str(small.parent), "--songs-per-cell", "1", "--seed", "0"])
    assert capsys.readouterr().out.strip() == str(small)
