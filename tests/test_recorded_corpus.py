"""The pure logic of corpora/recorded_music.py on tiny synthetic inputs: no apt, network or audio files."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from corpora import recorded_music as rm
from corpora.trivial_features import kmeans_nmi


def test_language_pairs_are_balanced_and_distinct():
    names = [lang.name for lang in rm.LANGUAGES]
    pairs = rm.assign_language_pairs(8, names, random.Random(3))
    assert len(pairs) == 8 and all(a != b for a, b in pairs)
    assert set(Counter(lang for pair in pairs for lang in pair).values()) == {4}
    with pytest.raises(ValueError, match="evenly"):
        rm.assign_language_pairs(3, names, random.Random(0))


def test_recording_splits_cover_every_language():
    rng = random.Random(1)
    pairs = rm.assign_language_pairs(8, ["a", "b", "c", "d"], rng)
    splits = rm.assign_recording_splits(pairs, rng)
    assert Counter(splits) == Counter(rm.SPLIT_OF_SLOT)
    for split in ("train", "val", "test"):
        assert {lang for pair, s in zip(pairs, splits) if s == split for lang in pair} == {"a", "b", "c", "d"}


def test_plan_is_balanced_deterministic_and_label_blind():
    durations = {r.key: 200.0 for r in rm.RECORDINGS}
    plans = rm.plan_corpus(rm.RECORDINGS, durations, rm.LANGUAGES, seed=0)
    assert plans == rm.plan_corpus(rm.RECORDINGS, durations, rm.LANGUAGES, seed=0)
    assert plans != rm.plan_corpus(rm.RECORDINGS, durations, rm.LANGUAGES, seed=1)
    assert len(plans) == 48 and len({p.song_id for p in plans}) == 48
    assert set(Counter((p.genre, p.language) for p in plans).values()) == {4}
    for plan in plans:  # the song id says nothing, the excerpt length is in range
        assert plan.song_id.startswith("song_") and plan.genre not in plan.song_id
        assert rm.EXCERPT_SECONDS[0] <= plan.duration_s <= rm.EXCERPT_SECONDS[1]
        voice = next(lang.voice for lang in rm.LANGUAGES if lang.name == plan.language)
        assert plan.voice.split("+")[0] == voice
    by_recording: dict[str, list[rm.SongPlan]] = {}
    for plan in plans:
        by_recording.setdefault(plan.recording, []).append(plan)
    for excerpts in by_recording.values():  # two excerpts, two languages, one split, no overlap
        first, second = sorted(excerpts, key=lambda p: p.start_s)
        assert first.language != second.language and first.split == second.split
        assert first.start_s + first.duration_s <= second.start_s


def test_excerpts_fit_and_short_recordings_are_refused():
    rng = random.Random(0)
    for _ in range(100):
        total, first, second = rng.uniform(90, 400), rng.uniform(34, 42), rng.uniform(34, 42)
        a, b = rm.excerpt_starts(total, (first, second), rng)
        assert 0 <= a and a + first <= b and b + second <= total
    with pytest.raises(ValueError, match="too short"):
        rm.excerpt_starts(60.0, (34.0, 34.0), rng)


def test_every_cell_gets_the_same_spread_of_lengths():
    durations = {r.key: 200.0 for r in rm.RECORDINGS}
    plans = rm.plan_corpus(rm.RECORDINGS, durations, rm.LANGUAGES, seed=2)
    low, high = rm.EXCERPT_SECONDS
    for cell in {(p.genre, p.language) for p in plans}:
        lengths = sorted(p.duration_s for p in plans if (p.genre, p.language) == cell)
        strata = [int((length - low) / (high - low) * len(lengths)) for length in lengths]
        assert strata == list(range(len(lengths)))  # one length from each quarter of the range


@pytest.mark.parametrize("language", rm.LANGUAGES, ids=lambda lang: lang.name)
def test_lines_are_varied_filled_and_in_the_right_script(language):
    lines = rm.lines_of(language, random.Random(5))
    text = [next(lines) for _ in range(12)]
    assert len(set(text)) == 12
    assert not any("{" in line or "  " in line for line in text)
    letters = [ch for line in text for ch in line if ch.isalpha()]
    script = {"hindi": (0x0900, 0x097F), "arabic": (0x0600, 0x06FF)}.get(language.name, (0x41, 0x24F))
    assert all(script[0] <= ord(ch) <= script[1] for ch in letters)
    again = rm.lines_of(language, random.Random(5))
    assert [next(again) for _ in range(12)] == text  # the seed alone fixes the text


def test_mix_sets_vocal_level_loudness_and_peak():
    rng = np.random.default_rng(0)
    music = 0.1 * rng.standard_normal((4000, 2)).astype(np.float32)
    vocal = np.sin(np.linspace(0, 200, 4000)).astype(np.float32)
    mix = rm.mix_at_level(music, vocal, snr_db=6.0)
    assert mix.shape == music.shape and mix.dtype == np.float32
    scale = mix[:, 0] - mix[:, 1]  # the centred vocal cancels: what is left is the scaled music
    gain = rm.rms(scale) / rm.rms(music[:, 0] - music[:, 1])
    vocal_part = (mix - gain * music).mean(axis=1)
    assert 20 * np.log10(rm.rms(vocal_part) / rm.rms(gain * music)) == pytest.approx(6.0, abs=0.01)
    assert 20 * np.log10(rm.rms(mix)) == pytest.approx(rm.TARGET_RMS_DBFS, abs=0.01)
    loud = rm.mix_at_level(music, np.r_[np.zeros(3999), 1.0].astype(np.float32), snr_db=20.0)
    assert np.abs(loud).max() <= rm.PEAK_LIMIT + 1e-6
    assert 20 * np.log10(rm.rms(loud)) == pytest.approx(rm.TARGET_RMS_DBFS, abs=0.5)  # even for one spike
    with pytest.raises(ValueError):
        rm.mix_at_level(music, vocal[:10], 0.0)


def test_vocal_track_fills_the_excerpt_with_whole_lines():
    rate = 100
    lines = iter(f"line {i}" for i in range(1000))
    track, used = rm.vocal_track(lines, lambda text, pitch: np.ones(250, dtype=np.float32), 2000, rate,
                                 random.Random(0))
    assert track.shape == (2000,) and used[:2] == ["line 0", "line 1"]
    assert 0.4 < track.mean() < 1.0 and track[:50].sum() == 0  # silence before the first line


def test_provenance_row_names_source_licence_voice_and_text():
    recording = rm.RECORDINGS[-1]
    plan = rm.SongPlan("song_007", recording.key, recording.genre, "spanish", "val", 1, 80.0, 36.5,
                       "es+f2", 150, 50, 3.0, 1)
    row = rm.provenance_row(plan, recording, "1.0-1", {"codec": "ogg/vorbis", "sample_rate": 44100,
                                                       "channels": 2}, "Veo el mar\nAmo el sol")
    assert row["package"] == recording.package and row["licence"] == rm.PACKAGES[recording.package]
    assert row["source_files"].count(";") == len(recording.stems) - 1
    assert row["voice"] == "espeak-ng -v es+f2 -s 150 -p 50" and row["text"] == "Veo el mar / Amo el sol"
    assert row["path"] == "audio/song_007.ogg" and row["split"] == "val"


def test_every_recording_has_a_known_package_and_each_genre_two_packages():
    assert {r.package for r in rm.RECORDINGS} == set(rm.PACKAGES)
    for genre in {r.genre for r in rm.RECORDINGS}:
        members = [r for r in rm.RECORDINGS if r.genre == genre]
        assert len(members) == len(rm.SPLIT_OF_SLOT)
        assert len({r.package for r in members}) >= 2 and len({r.artist for r in members}) >= 2


def test_trivial_feature_nmi_is_zero_for_a_constant_and_high_for_a_leak():
    labels = ["a", "b", "c"] * 8
    assert kmeans_nmi(np.full(24, 44100.0), labels, permutations=5)[0] == 0.0
    leak = np.array([{"a": 1.0, "b": 5.0, "c": 9.0}[x] for x in labels])
    assert kmeans_nmi(leak, labels, permutations=5)[0] == pytest.approx(1.0)
