"""Prepare speed on the demo corpus: cold and warm prepare, and decode + log-mel speed per core.

    python -m benchmarks.prepare_speed        (make bench)

Writes benchmarks/results/prepare_speed.json and prints a markdown table for the README.
Ratios, not absolute seconds, are what carries across machines: real-time factor = audio
seconds processed per wall second of one process.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import soundfile as sf

from components.audio import FeatureSpec, song_windows
from components.catalog import read_catalog
from components.config import PROJECT_ROOT, load_config, set_dotted
from components.preparation import prepare_features, resolve_source

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "prepare_speed.json"


def main() -> None:
    config = load_config("conv_vae")
    metadata = resolve_source(config["data"])  # generates the demo corpus once if missing
    spec = FeatureSpec(**config["features"])
    songs = read_catalog(metadata).songs

    # One process, decode + mel of every song: the per-core real-time factor.
    started = time.perf_counter()
    audio_seconds = 0.0
    for song in songs:
        song_windows(song.path, spec)
        audio_seconds += sf.info(song.path).duration
    single = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        set_dotted(config, "data.cache_dir", tmp)
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
        "cache_mb": round(size / 2**20, 1),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print("| measure | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value} |")


if __name__ == "__main__":
    main()
