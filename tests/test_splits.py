"""Song splits: every class in every split, clear errors for corpora too small, disjoint folds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from components.data.catalog import CatalogError, Song
from components.data.splits import SplitSpec, assign_splits


def corpus(per_cell: int, languages: str = "abcd", genres: str = "xyz") -> list[Song]:
    return [Song(f"{lang}-{genre}-{i}", Path(f"{lang}{genre}{i}.wav"), lang, genre)
            for lang in languages for genre in genres for i in range(per_cell)]


def classes(songs: list[Song], assigned: dict[str, str], split: str) -> tuple[int, int]:
    held = [s for s in songs if assigned[s.song_id] == split]
    return len({s.language for s in held}), len({s.genre for s in held})


@pytest.mark.parametrize("per_cell, fractions", [(1, (0.3, 0.3)), (2, (0.2, 0.2)), (4, (0.2, 0.2)),
                                                 (4, (0.1, 0.1))])
def test_every_split_holds_every_class(per_cell, fractions):
    songs = corpus(per_cell)
    assigned = assign_splits(songs, SplitSpec(*fractions, seed=0))
    counts = Counter(assigned.values())
    assert counts["val"] == max(round(len(songs) * fractions[0]), 4) == counts["test"]
    for split in ("train", "val", "test"):
        assert classes(songs, assigned, split) == (4, 3), split
    assert assigned == assign_splits(songs, SplitSpec(*fractions, seed=0))  # deterministic


def test_a_corpus_too_small_gets_the_smallest_sizes_that_work():
    with pytest.raises(CatalogError) as error:
        assign_splits(corpus(1), SplitSpec(0.2, 0.2, seed=0))
    message = str(error.value)
    assert "holds all 4 languages and 3 genres" in message
    assert "data.val_fraction >= 0.3 and data.test_fraction >= 0.3" in message
    assign_splits(corpus(1), SplitSpec(0.3, 0.3, seed=0))  # the sizes it names work
    with pytest.raises(CatalogError, match=r"every class needs at least 3 songs.*language 'e' \(2 songs\)"):
        assign_splits(corpus(2) + corpus(1, languages="e", genres="xy"), SplitSpec(0.2, 0.2, seed=0))


def test_a_split_column_wins_and_is_checked():
    songs = corpus(2)
    chosen = {"a-x-0", "b-y-0", "c-z-0", "d-x-0"}  # 4 languages, 3 genres
    fixed = [Song(s.song_id, s.path, s.language, s.genre, split="test" if s.song_id in chosen else None)
             for s in songs]
    assigned = assign_splits(fixed, SplitSpec(0.3, 0.0, seed=0))
    assert {sid for sid, split in assigned.items() if split == "test"} == chosen
    assert classes(songs, assigned, "val") == (4, 3)
    only_x = [Song(s.song_id, s.path, s.language, s.genre,
                   split="test" if s.song_id.endswith("x-0") else None) for s in songs]
    with pytest.raises(CatalogError, match="test lacks genre y, genre z"):
        assign_splits(only_x, SplitSpec(0.3, 0.0, seed=0))


def test_folds_partition_the_songs_and_each_holds_every_class():
    songs = corpus(4)
    tests = []
    for fold in range(4):
        assigned = assign_splits(songs, SplitSpec(0.2, 0.2, seed=3, folds=4, fold=fold))
        tests.append({sid for sid, split in assigned.items() if split == "test"})
        for split in ("train", "val", "test"):
            assert classes(songs, assigned, split) == (4, 3)
    assert sum(map(len, tests)) == len(songs) == len(set().union(*tests))
    with pytest.raises(CatalogError, match="use eval.folds <= 3"):
        assign_splits(corpus(1), SplitSpec(0.3, 0.2, seed=0, folds=4, fold=0))
