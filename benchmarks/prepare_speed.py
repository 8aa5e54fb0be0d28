"""Prepare speed on the demo corpus: cold and warm prepare, and decode + log-mel speed per core,
against the plain librosa loop a researcher writes first (load each file, then a mel
spectrogram per 30 s window), all in minutes of audio per second.

    python -m benchmarks.prepare_speed [--overrides k=v ...] [--out FILE]        (make bench)

On the demo corpus at the default features unless --overrides change them (e.g. data.source=<a
metadata.csv> and smaller features: what the smoke test runs). Writes
benchmarks/results/prepare_speed.json (or --out) and prints a markdown table for benchmarks/README.md.
Ratios, not absolute seconds, are what carries across machines: real-time factor = audio
seconds processed per wall second of one process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from components.config import PROJECT_ROOT, load_config
from components.data.audio import FeatureSpec, song_windows
from components.data.catalog import read_catalog
from components.data.preparation import prepare_features, resolve_source

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "prepare_speed.json"


def plain_librosa_loop(paths: list, spec: FeatureSpec) -> int:
    """librosa.load at the target rate, then melspectrogram + power_to_db per window; windows made."""
    window = int(spec.window_seconds * spec.sample_rate)
    hop = int(spec.hop_seconds * spec.sample_rate)
    made = 0
    for path in paths:
        audio, rate = librosa.load(path, sr=spec.sample_rate, mono=True)
        for start in range(0, max(len(audio) - window, 0) + 1, hop):
            mel = librosa.feature.melspectrogram(y=audio[start:start + window], sr=rate, n_fft=spec.n_fft,
                                                 hop_length=spec.hop_length, n_mels=spec.n_mels)
            librosa.power_to_db(mel, ref=np.max)
            made += 1
    return made


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--overrides", nargs="*", default=[], help="config overrides, e.g. features.n_mels=16")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    args = p.parse_args(argv)
    config = load_config("conv_vae", args.overrides)
    metadata = resolve_source(config.data)  # generates the demo corpus once if missing
    spec = config.features
    songs = read_catalog(metadata).songs

    # Both loops once on one song, untimed: first calls load decoders and compile librosa's
    # numba kernels, a cost that would otherwise land on whichever loop runs first.
    song_windows(songs[0].path, spec)
    plain_librosa_loop([songs[0].path], spec)

    # One process, decode + mel of every song: the per-core real-time factor.
    started = time.perf_counter()
    audio_seconds = 0.0
    for song in songs:
        song_windows(song.path, spec)
        audio_seconds += sf.info(song.path).duration
    single = time.perf_counter() - started

    started = time.perf_counter()
    plain_windows = plain_librosa_loop([song.path for song in songs], spec)
    plain = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        config.data.cache_dir = tmp
        started = time.perf_counter()
        cache = prepare_features(config)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        prepare_features(config)
        warm = time.perf_counter() - started
        windows, size = cache.manifest["windows"], (cache.path / "windows.f16").stat().st_size
        shutil.rmtree(tmp, ignore_errors=True)

    result = {
        "songs": len(songs), "windows": windows, "audio_minutes": round(audio_seconds / 60, 1),
        "cores": os.cpu_count(), "cold_prepare_s": round(cold, 2), "warm_prepare_s": round(warm, 3),
        "single_process_decode_mel_s": round(single, 2),
        "realtime_factor_per_core": round(audio_seconds / single, 1),
        "plain_librosa_loop_s": round(plain, 2), "plain_librosa_windows": plain_windows,
        "audio_min_per_s_plain_librosa": round(audio_seconds / 60 / plain, 2),
        "audio_min_per_s_single_process": round(audio_seconds / 60 / single, 2),
        "audio_min_per_s_cold_prepare": round(audio_seconds / 60 / cold, 2),
        "audio_min_per_s_warm_prepare": round(audio_seconds / 60 / warm, 1),
        "cache_mb": round(size / 2**20, 1),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| measure | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    main()
