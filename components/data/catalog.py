"""The song catalog: metadata.csv or a <root>/<language>/<genre>/ folder -> validated song entries."""

from __future__ import annotations

import csv
import difflib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from components.data.audio import AUDIO_EXTENSIONS
from components.errors import CatalogError

REQUIRED_COLUMNS = ("song_id", "path", "language", "genre")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Song:
    song_id: str
    path: Path
    language: str
    genre: str
    lyrics_path: Path | None = None
    split: str | None = None  # from metadata.csv when the user fixes the split


@dataclass
class Catalog:
    songs: list[Song]
    skipped: list[tuple[str, str]]  # (song id or file, reason), reported, never silent
    root: Path


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def _read_csv(csv_path: Path) -> list[Song]:
    root = csv_path.parent
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise CatalogError(f"{csv_path}: not UTF-8 text ({err}); save it as UTF-8") from err
    reader = csv.DictReader(text.splitlines())
    missing_cols = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
    if missing_cols:
        raise CatalogError(
            f"{csv_path}: missing column(s) {', '.join(missing_cols)}; "
            f"expected header song_id,path,language,genre[,lyrics_path][,split]"
        )
    songs, problems, seen = [], [], {}
    for line, row in enumerate(reader, start=2):
        song_id = (row["song_id"] or "").strip()
        if not song_id:
            problems.append(f"line {line}: empty song_id")
            continue
        if song_id in seen:
            problems.append(f"line {line}: duplicate song_id '{song_id}' (first on line {seen[song_id]})")
            continue
        seen[song_id] = line
        path = root / (row["path"] or "").strip()
        if not _inside(path, root):
            problems.append(f"line {line}: path '{row['path']}' escapes the data root {root}")
            continue
        lyrics = (row.get("lyrics_path") or "").strip()
        lyrics_path = root / lyrics if lyrics else None
        if lyrics_path is not None and not _inside(lyrics_path, root):
            problems.append(f"line {line}: lyrics_path '{lyrics}' escapes the data root {root}")
            continue
        split = (row.get("split") or "").strip().lower() or None
        if split is not None and split not in SPLITS:
            problems.append(f"line {line}: split '{split}' must be one of {', '.join(SPLITS)}")
            continue
        songs.append(Song(song_id, path, label(row["language"] or ""), label(row["genre"] or ""),
                          lyrics_path, split))
    if problems:
        raise CatalogError(f"{csv_path}: fix these rows and rerun:\n  " + "\n  ".join(problems))
    return songs


def _read_folder(root: Path) -> tuple[list[Song], list[tuple[str, str]]]:
    songs, skipped = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if path.suffix.lower() == ".txt" or path.name.startswith("."):
            continue  # lyrics beside songs, hidden files
        if len(rel.parts) != 3:
            skipped.append((str(rel), "not at <root>/<language>/<genre>/<song>.<ext>"))
            continue
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            skipped.append((str(rel), f"unsupported extension '{path.suffix}'"))
            continue
        language, genre, _ = rel.parts
        lyrics = path.with_suffix(".txt")
        song_id = f"{language}/{genre}/{path.stem}"
        songs.append(Song(song_id, path, label(language), label(genre),
                          lyrics if lyrics.exists() else None))
    return songs, skipped


def label(text: str) -> str:
    """A label as the catalog compares it: Unicode NFC, no surrounding space, lower case (a CSV
    cell, a folder name and a configured vocabulary entry alike)."""
    return unicodedata.normalize("NFC", text).strip().lower()


def _filter_labels(songs: list[Song], field: str, vocab: list[str] | None,
                   skipped: list[tuple[str, str]]) -> list[Song]:
    vocab = None if vocab is None else [label(v) for v in vocab]
    kept = []
    for song in songs:
        value = getattr(song, field)
        if not value:
            skipped.append((song.song_id, f"empty {field} label"))
        elif vocab is not None and value not in vocab:
            close = difflib.get_close_matches(value, vocab, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            skipped.append((song.song_id, f"unknown {field} '{value}'{hint}; "
                            f"allowed: {', '.join(vocab)} (data.{field}s)"))
        else:
            kept.append(song)
    return kept


def read_catalog(source: Path, languages: list[str] | None = None,
                 genres: list[str] | None = None) -> Catalog:
    """Read and validate a catalog. Missing files raise one CatalogError listing all of them,
    before any decoding starts; unknown labels are skipped and reported."""
    source = Path(source)
    if not source.exists():
        raise CatalogError(f"data source {source} does not exist: pass a metadata.csv or a folder")
    if source.is_file():
        songs, skipped, root = _read_csv(source), [], source.parent
    else:
        root = source
        if (source / "metadata.csv").exists():
            songs, skipped = _read_csv(source / "metadata.csv"), []
        else:
            songs, skipped = _read_folder(source)
    missing = [f"{s.song_id}: {s.path}" for s in songs if not s.path.is_file()]
    missing += [f"{s.song_id}: lyrics {s.lyrics_path}" for s in songs
                if s.lyrics_path is not None and not s.lyrics_path.is_file()]
    if missing:
        raise CatalogError(
            f"{len(missing)} file(s) named in {source} do not exist; fix the paths or remove the rows:\n  "
            + "\n  ".join(missing)
        )
    songs = _filter_labels(songs, "language", languages, skipped)
    songs = _filter_labels(songs, "genre", genres, skipped)
    if not songs and not skipped:
        raise CatalogError(f"{source}: no audio files found; expected <root>/<language>/<genre>/<song>"
                           f"{{{','.join(AUDIO_EXTENSIONS)}}} or a metadata.csv "
                           f"(song_id,path,language,genre)")
    if not songs:
        raise CatalogError(f"{source}: no usable songs (skipped: {skipped[:5]})")
    return Catalog(songs=songs, skipped=skipped, root=root)
