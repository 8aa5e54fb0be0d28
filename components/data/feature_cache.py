"""The feature cache: decode a catalog in parallel into a float16 log-mel memory map, once.

One folder per (input digest, feature config): windows.f16 (raw [N, n_mels, frames]),
windows.csv (one row per window), skipped.csv (songs left out and why) and manifest.json, written
last: a folder without a manifest, or whose files disagree with it, is never trusted.

A song split is not part of the decoded audio: each split setting (fractions, seed, fold) gets
splits/<key>/ with split.csv (song -> train / val / test) and norm.npz (per-mel-bin statistics of
its train windows), computed once and written atomically. Cross-validation folds and other split
seeds reuse one decode.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from components.data.audio import FeatureSpec, SongRejected, song_windows
from components.data.catalog import Catalog, CatalogError, Song
from components.data.lyrics_text import read_lyrics
from components.data.splits import SplitSpec, assign_splits
from components.processes import exit_with, gone, identity

# Bump when the code that fills a cache changes what it writes.
CACHE_FORMAT = 4  # 4: splits in splits/<key>/, every class in every split, a test split by default
MANIFEST = "manifest.json"


@dataclass
class FeatureCache:
    """A prepared, validated cache folder."""

    path: Path
    manifest: dict[str, Any]
    rows: pd.DataFrame  # row, song_id, window, start_seconds, language, genre[, split]
    windows: np.memmap  # [N, n_mels, frames] float16, un-normalised dB
    mel_mean: np.ndarray | None = None  # [n_mels] from the split's train windows only
    mel_std: np.ndarray | None = None
    split_key: str = ""  # "" until a split is applied (with_split)

    @property
    def digest(self) -> str:
        """The decoded audio's identity: inputs and feature settings."""
        return self.manifest["digest"]

    @property
    def dataset_digest(self) -> str:
        """The identity of what training reads: the audio and its split."""
        return f"{self.digest}-{self.split_key}" if self.split_key else self.digest

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Windows [len(rows), n_mels, frames] float16, in the order of rows.

        Read with positioned reads into one new array rather than through the memory map: pages
        touched through a map count as the process's resident memory until the kernel drops them
        (up to the whole cache by the end of an epoch); read pages stay in the shared page cache.
        Runs of consecutive rows are one read each.
        """
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.windows.shape[1:]), dtype=np.float16)
        row_bytes = out[0].nbytes if len(rows) else 0
        buffer = memoryview(out.reshape(-1).view(np.uint8))
        with open(self.windows.filename, "rb", buffering=0) as file:
            start = 0
            while start < len(rows):
                end = start + 1
                while end < len(rows) and rows[end] == rows[end - 1] + 1:
                    end += 1
                file.seek(int(rows[start]) * row_bytes)
                target = buffer[start * row_bytes:end * row_bytes]
                while len(target):  # a read may return fewer bytes than asked
                    got = file.readinto(target)
                    if not got:
                        raise OSError(f"{self.windows.filename} ended early: the cache is truncated; "
                                      f"delete {self.path} and prepare again")
                    target = target[got:]
                start = end
        return out

    @property
    def vocab(self) -> dict[str, list[str]]:
        return self.manifest["vocab"]

    def lyrics_texts(self) -> dict[str, str]:
        """song_id -> lyrics text for the cached songs that have usable lyrics."""
        stored = json.loads((self.path / "lyrics.json").read_text(encoding="utf-8"))
        return {song: entry["text"] for song, entry in stored.items() if entry["text"] is not None}

    @property
    def skipped(self) -> pd.DataFrame:
        return pd.read_csv(self.path / "skipped.csv", dtype=str, keep_default_na=False)


def _file_digest(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def refuse_duplicate_audio(songs: list[Song], audio: dict[str, str]) -> None:
    """One recording under two song ids could sit in train and test at once: identical audio
    bytes (audio: song id -> content digest) are an error naming every id that shares them.
    Empty files are left to the decoder, which skips and reports them."""
    by_content: dict[str, list[Song]] = {}
    for song in songs:
        if song.path.stat().st_size > 0:
            by_content.setdefault(audio[song.song_id], []).append(song)
    shared = [group for group in by_content.values() if len(group) > 1]
    if shared:
        listed = "\n  ".join(", ".join(f"'{s.song_id}' ({s.path})" for s in group) for group in shared)
        raise CatalogError(f"the same audio (identical bytes) is listed under more than one song_id, so one "
                           f"recording could land in two splits:\n  {listed}\nKeep one row per "
                           f"recording: delete the others from metadata.csv (or the folder).")


def input_digest(catalog: Catalog, spec: FeatureSpec) -> str:
    """Everything that determines the cache content: audio bytes, labels, lyrics (and a split
    column), the input rows skipped before decoding and why, feature settings, format; so a
    cache hit reports the same skips as the build that made it. Refuses audio listed twice
    (refuse_duplicate_audio)."""
    audio = {song.song_id: _file_digest(song.path) for song in catalog.songs}
    refuse_duplicate_audio(catalog.songs, audio)
    digest = hashlib.sha256()
    header = {"format": CACHE_FORMAT, "features": asdict(spec)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for song in sorted(catalog.songs, key=lambda s: s.song_id):
        lyrics = _file_digest(song.lyrics_path) if song.lyrics_path else ""
        fields = (song.song_id, song.language, song.genre, song.split or "",
                  audio[song.song_id], lyrics)
        digest.update("\x1f".join(fields).encode() + b"\x1e")
    for row, reason in sorted(catalog.skipped):
        digest.update(f"skipped\x1f{row}\x1f{reason}".encode() + b"\x1e")
    return digest.hexdigest()[:20]


def _process(args: tuple[Song, FeatureSpec]) -> tuple[Song, np.ndarray | None, list[int], str]:
    song, spec = args
    try:
        mels, starts = song_windows(song.path, spec)
        return song, mels, starts, ""
    except SongRejected as err:
        return song, None, [], str(err)


def _norm_stats(windows: np.memmap, train_rows: np.ndarray, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-mel-bin mean/std over every frame of the train windows, streamed in chunks (float64 sums)."""
    total = np.zeros(n_mels)
    total_sq = np.zeros(n_mels)
    count = 0
    for start in range(0, len(train_rows), 64):
        chunk = windows[train_rows[start : start + 64]].astype(np.float64)
        total += chunk.sum(axis=(0, 2))
        total_sq += (chunk**2).sum(axis=(0, 2))
        count += chunk.shape[0] * chunk.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-6))
    return mean.astype(np.float32), std.astype(np.float32)


def _decode_all(catalog: Catalog, spec: FeatureSpec, workers: int, raw_path: Path):
    """Stream every song's windows into raw_path; return window rows and skipped songs."""
    rows, skipped = [], list(catalog.skipped)
    jobs = [(song, spec) for song in catalog.songs]
    pool = None
    if workers > 1 and len(jobs) > 1:
        # forkserver: workers must not inherit a parent's torch/OpenMP thread state. An executor
        # (not Pool) so a worker that dies raises BrokenProcessPool instead of hanging.
        pool = ProcessPoolExecutor(min(workers, len(jobs)),
                                   mp_context=multiprocessing.get_context("forkserver"),
                                   initializer=exit_with, initargs=(identity(os.getpid()),))
        results = pool.map(_process, jobs)
    else:
        results = map(_process, jobs)
    try:
        with open(raw_path, "wb") as raw:
            for song, mels, starts, reason in tqdm(results, total=len(jobs), desc="decode + mel",
                                                   unit="song"):
                if mels is None:
                    skipped.append((song.song_id, reason))
                    continue
                raw.write(np.ascontiguousarray(mels).tobytes())
                for index, start in enumerate(starts):
                    rows.append({"song_id": song.song_id, "window": index,
                                 "start_seconds": round(start / spec.sample_rate, 3),
                                 "language": song.language, "genre": song.genre})
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return rows, skipped


def split_key(split: SplitSpec) -> str:
    return hashlib.sha256(json.dumps(asdict(split), sort_keys=True).encode()).hexdigest()[:12]


def with_split(cache: FeatureCache, catalog: Catalog, split: SplitSpec) -> FeatureCache:
    """The cache with a song split applied: rows gain their split, normalisation comes from the
    split's train windows. Computed once per split setting, in splits/<key>/."""
    key = split_key(split)
    folder = cache.path / "splits" / key
    if not (folder / "norm.npz").exists():
        decoded = set(cache.rows.song_id)
        assigned = assign_splits([s for s in catalog.songs if s.song_id in decoded], split)
        splits = cache.rows.song_id.map(assigned)
        train_rows = cache.rows.row[splits == "train"].to_numpy()
        if split.all_test:  # no train songs; a model scoring this corpus brings its own statistics
            train_rows = cache.rows.row.to_numpy()
        if len(train_rows) == 0:
            raise CatalogError("no song landed in the train split; lower data.val_fraction")
        mean, std = _norm_stats(cache.windows, train_rows, cache.windows.shape[1])
        building = folder.with_name(f".{key}-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        try:
            pd.DataFrame({"song_id": sorted(assigned), "split": [assigned[s] for s in sorted(assigned)]}
                         ).to_csv(building / "split.csv", index=False)
            (building / "split.json").write_text(json.dumps(asdict(split), indent=2))
            np.savez(building / "norm.npz", mean=mean, std=std)  # last: marks the folder complete
            try:
                os.replace(building, folder)
            except OSError:  # a parallel worker put the same split (same inputs) in place first
                if not (folder / "norm.npz").exists():
                    raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
    assigned = pd.read_csv(folder / "split.csv", dtype=str, keep_default_na=False)
    rows = cache.rows.assign(split=cache.rows.song_id.map(dict(zip(assigned.song_id, assigned.split))))
    norm = np.load(folder / "norm.npz")
    return replace(cache, rows=rows, mel_mean=norm["mean"], mel_std=norm["std"], split_key=key)


def build_cache(catalog: Catalog, spec: FeatureSpec, split: SplitSpec, cache_root: Path,
                workers: int = 0) -> FeatureCache:
    """Return the cache for (catalog, spec) with the split applied, decoding the audio only if
    no valid cache of it exists."""
    return with_split(_decoded(catalog, spec, Path(cache_root), workers), catalog, split)


def remove_stale_builds(cache_root: Path) -> None:
    """Delete the .building-<digest>-<pid> folders of prepares that were killed (their pid is
    gone); those of live processes are theirs to finish."""
    for stale in cache_root.glob(".building-*"):
        if gone(stale.name.rsplit("-", 1)[-1]):
            print(f"note: removing {stale}, left by a prepare that was killed", file=sys.stderr)
            shutil.rmtree(stale, ignore_errors=True)


def _decoded(catalog: Catalog, spec: FeatureSpec, cache_root: Path, workers: int) -> FeatureCache:
    digest = input_digest(catalog, spec)
    final = cache_root / digest
    cache = open_cache(final)
    if cache is not None:
        return cache
    if final.exists():
        shutil.rmtree(final)  # stale or truncated: rebuilt below, never trusted
    workers = workers or os.cpu_count() or 1
    remove_stale_builds(cache_root)
    building = cache_root / f".building-{digest}-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    started = time.perf_counter()
    try:
        rows, skipped = _decode_all(catalog, spec, workers, building / "windows.f16")
        if not rows:
            reasons = "\n  ".join(f"{sid}: {why}" for sid, why in skipped)
            raise CatalogError(f"no song produced a window:\n  {reasons}")
        table = pd.DataFrame(rows)
        table.insert(0, "row", np.arange(len(table)))
        produced = set(table.song_id)
        decoded = [s for s in catalog.songs if s.song_id in produced]
        lyrics = {}
        for song in decoded:
            text, problem = read_lyrics(song.lyrics_path)
            lyrics[song.song_id] = {"text": text, "problem": problem}
        (building / "lyrics.json").write_text(json.dumps(lyrics, ensure_ascii=False), encoding="utf-8")
        table.to_csv(building / "windows.csv", index=False)
        pd.DataFrame(skipped, columns=["song", "reason"]).to_csv(building / "skipped.csv", index=False)
        manifest = {
            "digest": digest, "format": CACHE_FORMAT, "features": asdict(spec),
            "shape": [len(table), spec.n_mels, spec.frames],
            "dtype": "float16", "songs": int(table.song_id.nunique()), "windows": len(table),
            "skipped": len(skipped),
            "songs_without_lyrics": sum(entry["text"] is None for entry in lyrics.values()),
            "vocab": {"language": sorted(table.language.unique()), "genre": sorted(table.genre.unique())},
            "audio_seconds": round(float(len(table)) * spec.window_seconds, 1),
            "build_seconds": round(time.perf_counter() - started, 2),
            "source": str(catalog.root),
        }
        (building / MANIFEST).write_text(json.dumps(manifest, indent=2))
        try:
            os.replace(building, final)
        except OSError:
            # Parallel tune workers prepare at once: another one renamed its build of the same
            # digest (the same inputs, so the same content) into place first; use that one.
            if open_cache(final) is None:
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    cache = open_cache(final)
    assert cache is not None, f"cache {final} failed validation right after being built"
    return cache


def open_cache(path: Path) -> FeatureCache | None:
    """Open a cache folder (without a split: with_split applies one), or None when it is missing,
    incomplete or truncated."""
    manifest_path = Path(path) / MANIFEST
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        shape = tuple(manifest["shape"])
        raw = Path(path) / "windows.f16"
        if manifest.get("format") != CACHE_FORMAT or raw.stat().st_size != int(np.prod(shape)) * 2:
            return None
        # Labels and ids stay strings: a song called "nan" or "NA" must not become a float.
        rows = pd.read_csv(Path(path) / "windows.csv", keep_default_na=False,
                           dtype={"song_id": str, "language": str, "genre": str})
        if len(rows) != shape[0]:
            return None
        windows = np.memmap(raw, dtype=np.float16, mode="r", shape=shape)
        return FeatureCache(Path(path), manifest, rows, windows)
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
