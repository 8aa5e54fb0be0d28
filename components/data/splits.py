"""Train / val / test by song, stratified by language x genre, every class in every split.

Val songs select (early stopping, pruning, the Optuna objective, promotion); test songs only
report. A split that misses a class cannot score it, so every split must hold every language and
every genre; a corpus too small for that gets an error with the smallest sizes that work.
With `eval.folds: K` the songs are cut into K song-disjoint folds (each holding every class);
fold k is the test split, val is drawn from the others.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from components.data.catalog import CatalogError, Song
from components.vocabulary import TASKS  # a song carries one class of each

SPLITS = ("train", "val", "test")
ATTEMPTS = 200  # reshuffles tried before a corpus is declared too small for covering splits


@dataclass(frozen=True)
class SplitSpec:
    """data.val_fraction / test_fraction (shares of songs), data.split_seed, and for
    cross-validation eval.folds with data.fold, the fold that is the test split. all_test: every
    song is a test song (a corpus scored by a model that never saw it: pipelines.evaluate)."""

    val_fraction: float
    test_fraction: float
    seed: int
    folds: int = 1
    fold: int = 0
    all_test: bool = False


def _stratified_order(songs: Sequence[Song], rng: random.Random) -> list[Song]:
    """Strata (language, genre) shuffled and interleaved round-robin: any prefix spreads over
    as many strata as it can."""
    strata: dict[tuple[str, str], list[Song]] = {}
    for song in sorted(songs, key=lambda s: s.song_id):
        strata.setdefault((song.language, song.genre), []).append(song)
    groups = [strata[key] for key in sorted(strata)]
    for group in groups:
        rng.shuffle(group)
    rng.shuffle(groups)
    return [group[i] for i in range(max(map(len, groups), default=0)) for group in groups
            if i < len(group)]


def _classes(song: Song) -> set[tuple[str, str]]:
    return {("language", song.language), ("genre", song.genre)}


def _take(pool: list[Song], size: int, needed: set[tuple[str, str]]) -> list[Song]:
    """size songs from pool (removed from it): first those that cover classes still missing
    (the most at a time), then the next in stratified order."""
    chosen: list[Song] = []
    missing = set(needed)
    while missing and len(chosen) < size:
        best = max(pool, key=lambda s: len(_classes(s) & missing), default=None)
        if best is None or not _classes(best) & missing:
            break
        chosen.append(best)
        pool.remove(best)
        missing -= _classes(best)
    while len(chosen) < size and pool:
        chosen.append(pool.pop(0))
    return chosen


def _sizes(count: int, spec: SplitSpec) -> tuple[int, int]:
    """(val songs, test songs) of count free songs."""
    if spec.folds > 1:
        test = count // spec.folds + (spec.fold < count % spec.folds)
    else:
        test = round(count * spec.test_fraction)
    val = max(round(count * spec.val_fraction), 1 if spec.val_fraction > 0 else 0)
    return val, test


def _draw(free: list[Song], spec: SplitSpec, rng: random.Random,
          needed: set[tuple[str, str]]) -> dict[str, str]:
    pool = _stratified_order(free, rng)
    n_val, n_test = _sizes(len(free), spec)
    if spec.folds > 1:
        folds = []
        for fold in range(spec.folds):
            size = len(free) // spec.folds + (fold < len(free) % spec.folds)
            folds.append(_take(pool, size, needed))
        test = folds[spec.fold]
        pool = [song for fold, members in enumerate(folds) if fold != spec.fold for song in members]
    else:
        test = []
    val = _take(pool, n_val, needed)
    if spec.folds <= 1:
        test = _take(pool, n_test, needed)
    assigned = {s.song_id: "val" for s in val} | {s.song_id: "test" for s in test}
    return assigned | {s.song_id: "train" for s in pool}


def missing_classes(songs: Sequence[Song], assigned: dict[str, str],
                    splits: Sequence[str]) -> dict[str, list[str]]:
    """{split: ['language hindi', ...]} for each split that lacks a class of the corpus."""
    needed = set().union(*(_classes(s) for s in songs))
    missing = {}
    for split in splits:
        held = set().union(*(_classes(s) for s in songs if assigned.get(s.song_id) == split))
        if needed - held:
            missing[split] = sorted(f"{task} {value}" for task, value in needed - held)
    return missing


def _smallest_fraction(count: int, songs_needed: int) -> float:
    """The smallest fraction (two decimals) whose rounded share of count songs is songs_needed."""
    fraction = math.ceil((songs_needed - 0.5) / count * 100) / 100
    while round(count * fraction) < songs_needed:
        fraction += 0.01
    return round(fraction, 2)


def _too_small(songs: Sequence[Song], spec: SplitSpec, held_out: Sequence[str],
               missing: dict[str, list[str]]) -> CatalogError:
    per_class = {(task, value): 0 for s in songs for task, value in _classes(s)}
    for song in songs:
        for key in _classes(song):
            per_class[key] += 1
    counts = {task: len({v for t, v in per_class if t == task}) for task in TASKS}
    needed = max(counts.values())  # a song holds one language and one genre
    splits = ["train", *held_out]
    scarce = [f"{task} '{value}' ({n} songs)" for (task, value), n in sorted(per_class.items())
              if n < len(splits)]
    lines = [f"the corpus of {len(songs)} songs cannot be split so that every split "
             f"({', '.join(splits)}) holds all {counts['language']} languages and "
             f"{counts['genre']} genres: " + "; ".join(f"{split} lacks {', '.join(classes)}"
                                                       for split, classes in missing.items())]
    if scarce:
        lines.append(f"every class needs at least {len(splits)} songs (one per split); too few: "
                     f"{', '.join(scarce)}. Add songs, or leave those classes out with "
                     f"data.languages / data.genres")
    smallest = _smallest_fraction(len(songs), needed)
    if spec.folds > 1:
        largest = len(songs) // needed
        lines.append(f"each of eval.folds={spec.folds} folds (the test split) needs at least {needed} "
                     f"songs: use eval.folds <= {max(largest, 2)}; val needs {needed} songs too: "
                     f"data.val_fraction >= {smallest} (now {spec.val_fraction})")
    else:
        lines.append(f"val and test need at least {needed} songs each: the smallest sizes that work "
                     f"are data.val_fraction >= {smallest} and data.test_fraction >= {smallest} "
                     f"(now {spec.val_fraction} and {spec.test_fraction}), leaving "
                     f"{len(songs) - 2 * round(len(songs) * smallest)} train songs; "
                     f"data.test_fraction: 0.0 drops the test split (no held-out scores)")
    return CatalogError("\n  ".join(lines))


def assign_splits(songs: Sequence[Song], spec: SplitSpec) -> dict[str, str]:
    """{song_id: 'train' | 'val' | 'test'}: song-level, stratified, every class in every split.
    Songs with a split in metadata.csv keep it (then the coverage of the result is checked all
    the same). Deterministic for a given spec.seed."""
    if spec.all_test:
        return {s.song_id: "test" for s in songs}
    if spec.folds > 1 and any(s.split for s in songs):
        raise CatalogError("eval.folds > 1 draws its own song-disjoint folds, but metadata.csv has "
                           "a split column; remove it or set eval.folds: 1")
    fixed = {s.song_id: s.split for s in songs if s.split}
    free = [s for s in songs if not s.split]
    needed = set().union(*(_classes(s) for s in songs)) if songs else set()
    held_out = ["val"] + (["test"] if spec.folds > 1 or spec.test_fraction > 0
                          or "test" in fixed.values() else [])
    splits = ["train", *held_out]
    best: dict[str, str] = {}
    best_missing: dict[str, list[str]] | None = None
    # Cross-validation folds must be one partition of the songs: an attempt counts only when the
    # splits of every fold hold every class, so each fold's run finds the same attempt.
    folds = [replace(spec, fold=fold) for fold in range(spec.folds)] if spec.folds > 1 else [spec]
    for attempt in range(ATTEMPTS):
        drawn = {f.fold: _draw(free, f, random.Random(spec.seed * 1_000_003 + attempt), needed) | fixed
                 for f in folds}
        missing = next((m for m in (missing_classes(songs, a, splits) for a in drawn.values()) if m), {})
        assigned = drawn[spec.fold]
        if not missing:
            return assigned
        if best_missing is None or sum(map(len, missing.values())) < sum(map(len, best_missing.values())):
            best, best_missing = assigned, missing
    assert best_missing is not None and best is not None
    raise _too_small(songs, spec, held_out, best_missing)
