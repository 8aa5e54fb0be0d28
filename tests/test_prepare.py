"""prepare on real audio files: windows, bad input, song-level split, train-only statistics, caching."""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from components.data.audio import FeatureSpec, SongRejected, decode, window_starts
from components.data.catalog import CatalogError, read_catalog
from components.data.dataset import WindowDataset
from components.data.feature_cache import open_cache
from components.data.preparation import prepare_features
from tests.conftest import write_tone


def full_spec(**changes) -> FeatureSpec:
    values = dict(sample_rate=22050, window_seconds=30.0, hop_seconds=20.0, min_tail_seconds=10.0,
                  n_mels=128, n_fft=2048, hop_length=512, silence_db=-60.0)
    return FeatureSpec(**(values | changes))


def test_report_window_is_128_by_1292():
    spec = full_spec()
    assert (spec.n_mels, spec.frames) == (128, 1292)


@pytest.mark.parametrize("seconds, expected", [
    (29.9, []),            # shorter than one window: no window (the song is skipped)
    (30.0, [0]),
    (45.0, [0, 15]),       # 15 s tail after 0-30 s >= 10 s: one end-aligned window
    (39.0, [0]),           # 9 s tail: dropped
    (70.0, [0, 20, 40]),
    (75.0, [0, 20, 40]),   # 5 s tail: dropped
    (80.0, [0, 20, 40, 50]),
])
def test_window_starts(seconds, expected):
    spec = full_spec()
    starts = [s / spec.sample_rate for s in window_starts(int(seconds * spec.sample_rate), spec)]
    assert starts == pytest.approx(expected)


@pytest.mark.parametrize("name, rate, channels", [
    ("x.flac", 44100, 2), ("x.mp3", 44100, 2), ("x.ogg", 32000, 1), ("x.wav", 8000, 1),
    ("x.wav", 96000, 6),
])
def test_decode_any_rate_and_channel_count_to_mono_22050(tmp_path, name, rate, channels):
    path = write_tone(tmp_path / name, 3.0, sr=rate, channels=channels)
    samples = decode(path, 22050)
    assert samples.ndim == 1 and samples.dtype == np.float32
    assert len(samples) == pytest.approx(3 * 22050, abs=2500)  # mp3 adds encoder padding


def _tiny_config(tiny_config, source: Path, *extra: str) -> dict:
    return tiny_config("conv_vae", f"data.source={source}", *extra)


def _copy_corpus(corpus: Path, target: Path) -> Path:
    shutil.copytree(corpus.parent, target)
    return target / "metadata.csv"


def _append_rows(metadata: Path, rows: list[list[str]]) -> None:
    with open(metadata, "a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def test_missing_files_are_listed_together_before_any_work(corpus, tmp_path):
    metadata = _copy_corpus(corpus, tmp_path / "data")
    _append_rows(metadata, [["gone1", "audio/nope1.wav", "english", "pop", ""],
                            ["gone2", "audio/nope2.flac", "hindi", "rock", "lyrics/nope2.txt"]])
    with pytest.raises(CatalogError) as err:
        read_catalog(metadata)
    message = str(err.value)
    assert "3 file(s)" in message and "nope1.wav" in message and "nope2.flac" in message
    assert "nope2.txt" in message


def test_bad_files_are_skipped_with_reasons_and_the_rest_prepared(corpus, tmp_path, tiny_config):
    metadata = _copy_corpus(corpus, tmp_path / "data")
    config = _tiny_config(tiny_config, metadata, "data.languages=[arabic, english, hindi, spanish]")
    before = prepare_features(config)  # prepared before the bad files arrive: must survive them
    audio = metadata.parent / "audio"
    (audio / "empty.wav").write_bytes(b"")
    (audio / "corrupt.flac").write_bytes(b"fLaC" + os.urandom(2000))
    write_tone(audio / "silent.wav", 5.0, amplitude=0.0)
    write_tone(audio / "short.wav", 1.0)
    nan = write_tone(audio / "nan.wav", 5.0, subtype="FLOAT")
    data, sr = sf.read(nan)
    data[100] = np.nan
    sf.write(nan, data, sr, subtype="FLOAT")
    (audio / "notes.txt").write_text("not audio")
    _append_rows(metadata, [
        ["empty", "audio/empty.wav", "english", "pop", ""],
        ["corrupt", "audio/corrupt.flac", "english", "pop", ""],
        ["silent", "audio/silent.wav", "english", "pop", ""],
        ["short", "audio/short.wav", "english", "pop", ""],
        ["nan", "audio/nan.wav", "english", "pop", ""],
        ["wrongext", "audio/notes.txt", "english", "pop", ""],
        ["typo", audio.name + "/" + sorted(p.name for p in audio.glob("*.wav"))[0], "englsh", "pop", ""],
    ])
    cache = prepare_features(config)
    assert cache.path != before.path and open_cache(before.path) is not None
    reasons = dict(cache.skipped.itertuples(index=False))
    assert "empty" in reasons["empty"]
    assert "cannot be decoded" in reasons["corrupt"]
    assert "silent" in reasons["silent"]
    assert "too short" in reasons["short"]
    assert "NaN" in reasons["nan"]
    assert "unsupported extension" in reasons["wrongext"]
    assert "unknown language 'englsh'" in reasons["typo"] and "english" in reasons["typo"]
    assert set(cache.rows.song_id) == {s.song_id for s in read_catalog(corpus).songs}


def test_skips_are_reported_on_a_cache_hit_and_a_vocabulary_matches_as_labels_do(corpus, tmp_path,
                                                                                   tiny_config):
    metadata = _copy_corpus(corpus, tmp_path / "data")
    config = _tiny_config(tiny_config, metadata)
    clean = prepare_features(config)
    assert clean.skipped.empty
    first = sorted(p.name for p in (metadata.parent / "audio").glob("*.wav"))[0]
    # A row whose label is empty: the kept songs are those of the clean cache, the input is not.
    _append_rows(metadata, [["unlabelled", f"audio/{first}", "", "pop", ""]])
    for attempt in ("build", "cache hit"):
        cache = prepare_features(config)
        assert cache.path != clean.path, attempt
        assert dict(cache.skipped.itertuples(index=False)) == {"unlabelled": "empty language label"}, attempt
        assert cache.manifest["skipped"] == 1, attempt
    # data.languages as a user types it: matched after the same normalisation as CSV labels.
    typed = _tiny_config(tiny_config, metadata, "data.languages=[' Arabic', English, HINDI, spanish]")
    assert prepare_features(typed).path == cache.path


def test_cache_is_song_split_train_normalised_and_reused(corpus, tiny_config):
    config = _tiny_config(tiny_config, corpus)
    cache = prepare_features(config)
    rows = cache.rows
    assert cache.windows.shape == (len(rows), 16, 173) and cache.windows.dtype == np.float16
    splits_per_song = rows.groupby("song_id").split.nunique()
    assert (splits_per_song == 1).all(), "a song's windows straddle splits"
    assert set(rows.split) == {"train", "val", "test"}
    for split, songs in rows.groupby("split"):  # every split holds every class
        assert songs.language.nunique() == 4 and songs.genre.nunique() == 3, split
    train = np.asarray(cache.windows[rows.row[rows.split == "train"].to_numpy()], dtype=np.float64)
    assert np.allclose(cache.mel_mean, train.mean(axis=(0, 2)), atol=1e-3)
    assert np.allclose(cache.mel_std, train.std(axis=(0, 2)), rtol=1e-3)
    assert cache.vocab == {"language": ["arabic", "english", "hindi", "spanish"],
                           "genre": ["hiphop", "pop", "rock"]}
    built = (cache.path / "manifest.json").stat().st_mtime_ns
    again = prepare_features(config)
    assert again.path == cache.path and (again.path / "manifest.json").stat().st_mtime_ns == built
    assert again.split_key == cache.split_key and again.rows.equals(cache.rows)
    # Another split of the same songs reuses the decoded audio: a split folder, not a new cache.
    other = prepare_features(dataclasses.replace(config, data=dataclasses.replace(config.data, split_seed=5)))
    assert other.path == cache.path and other.split_key != cache.split_key
    assert (other.path / "manifest.json").stat().st_mtime_ns == built
    assert not other.rows.split.equals(cache.rows.split)
    assert not np.allclose(other.mel_mean, cache.mel_mean)  # its own train songs' statistics
    other = prepare_features(_tiny_config(tiny_config, corpus, "features.n_mels=8"))
    assert other.path != cache.path  # keyed by the feature config too


def test_read_returns_the_rows_asked_for_in_their_order(corpus, tiny_config):
    cache = prepare_features(_tiny_config(tiny_config, corpus))
    rows = np.array([5, 2, 3, 4, 0, 0, len(cache.rows) - 1])  # a run, a repeat, the last row
    assert np.array_equal(cache.read(rows), np.asarray(cache.windows[rows]))
    assert cache.read(np.array([], dtype=np.int64)).shape == (0, *cache.windows.shape[1:])


def test_batches_are_train_normalised_windows_with_their_labels(corpus, tiny_config):
    cache = prepare_features(_tiny_config(tiny_config, corpus))
    dataset = WindowDataset(cache, "val")
    batch = dataset.__getitems__([3, 0, 2])
    rows = batch["row"].numpy()
    assert list(rows) == sorted(dataset.row_ids[[3, 0, 2]])  # read in file order
    raw = np.asarray(cache.windows[rows], dtype=np.float32)
    expected = (raw - cache.mel_mean[:, None]) / cache.mel_std[:, None]
    assert batch["mel"].shape == (3, 1, *cache.windows.shape[1:])
    assert np.allclose(batch["mel"][:, 0].numpy(), expected, rtol=1e-6, atol=1e-6)
    by_row = cache.rows.set_index("row")
    assert [cache.vocab["genre"][i] for i in batch["genre"]] == list(by_row.genre[rows])


def test_read_of_a_cache_truncated_under_it_names_the_fix(corpus, tmp_path, tiny_config):
    cache = prepare_features(_tiny_config(tiny_config, _copy_corpus(corpus, tmp_path / "c"),
                                          f"data.cache_dir={tmp_path / 'cache'}"))
    with open(cache.path / "windows.f16", "r+b") as handle:
        handle.truncate(cache.windows[0].nbytes * 2 + 10)
    assert cache.read(np.array([0, 1])).shape[0] == 2
    with pytest.raises(OSError, match=r"truncated.*prepare again"):
        cache.read(np.array([1, 2]))


def test_truncated_or_unfinished_cache_is_rebuilt(corpus, tiny_config):
    config = _tiny_config(tiny_config, corpus)
    cache = prepare_features(config)
    with open(cache.path / "windows.f16", "r+b") as handle:
        handle.truncate(100)
    assert open_cache(cache.path) is None
    rebuilt = prepare_features(config)
    assert rebuilt.windows.shape == cache.windows.shape
    (rebuilt.path / "manifest.json").unlink()  # as if a build died before its last write
    assert open_cache(rebuilt.path) is None
    assert prepare_features(config).windows.shape == cache.windows.shape


def test_folder_layout_is_read_with_lyrics(tmp_path):
    write_tone(tmp_path / "english" / "pop" / "a.wav", 31)
    (tmp_path / "english" / "pop" / "a.txt").write_text("hello", encoding="utf-8")
    write_tone(tmp_path / "hindi" / "rock" / "b.wav", 31)
    write_tone(tmp_path / "stray.wav", 31)
    catalog = read_catalog(tmp_path)
    songs = {s.song_id: s for s in catalog.songs}
    assert set(songs) == {"english/pop/a", "hindi/rock/b"}
    assert songs["english/pop/a"].lyrics_path.name == "a.txt"
    assert catalog.skipped and "stray.wav" in catalog.skipped[0][0]


def test_duplicate_ids_and_escaping_paths_are_errors(tmp_path):
    write_tone(tmp_path / "a.wav", 31)
    (tmp_path / "metadata.csv").write_text(
        "song_id,path,language,genre\nx,a.wav,english,pop\nx,a.wav,english,pop\ny,../../etc/passwd,english,pop\n")
    with pytest.raises(CatalogError, match="duplicate song_id 'x'") as err:
        read_catalog(tmp_path / "metadata.csv")
    assert "escapes the data root" in str(err.value)


def test_the_same_audio_under_two_ids_is_an_error_naming_both(corpus, tmp_path, tiny_config):
    metadata = _copy_corpus(corpus, tmp_path / "data")
    first = read_catalog(metadata).songs[0]
    copy = metadata.parent / "audio" / f"copy{first.path.suffix}"
    shutil.copyfile(first.path, copy)  # another file name, the same recording
    _append_rows(metadata, [["again", f"audio/{copy.name}", first.language, first.genre, ""]])
    with pytest.raises(CatalogError, match="identical bytes") as err:
        prepare_features(_tiny_config(tiny_config, metadata))
    assert f"'{first.song_id}'" in str(err.value) and "'again'" in str(err.value)
    assert not list(tmp_path.glob("**/.building-*"))  # refused before any decoding


def test_song_rejected_for_too_short_audio(tmp_path):
    from components.data.audio import song_windows
    with pytest.raises(SongRejected, match="too short"):
        song_windows(write_tone(tmp_path / "s.wav", 5.0), full_spec())


def test_a_file_longer_than_the_limit_is_refused_before_decoding_and_never_read_past_it(tmp_path,
                                                                                       monkeypatch):
    import librosa

    from components.data.audio import song_windows
    spec = replace(full_spec(), window_seconds=2.0, hop_seconds=2.0, max_song_seconds=4.0)
    long = write_tone(tmp_path / "long.flac", 6.0)
    with pytest.raises(SongRejected, match=r"longer than features.max_song_seconds=4 \(6 s\): cut it"):
        song_windows(long, spec)
    # A header that understates the length: the decode stops at the limit and refuses it then.
    read = []
    load = librosa.load
    monkeypatch.setattr(librosa, "get_duration", lambda path: 1.0)
    monkeypatch.setattr(librosa, "load", lambda *a, **k: read.append(k["duration"]) or load(*a, **k))
    with pytest.raises(SongRejected, match=r"max_song_seconds=4 \(5 s\)"):
        song_windows(long, spec)
    assert read == [5.0]
    assert len(song_windows(write_tone(tmp_path / "ok.wav", 4.0), spec)[1]) == 2


@pytest.mark.slow
def test_prepare_entry_point_decodes_in_parallel_and_logs_the_dataset(corpus, tmp_path, mlflow_store,
                                                                       capsys):
    import mlflow

    from components.config import load_config
    from pipelines.prepare import main as prepare
    from tests.conftest import tiny_overrides

    overrides = tiny_overrides(tmp_path, "data.decode_workers=2")
    prepare(["--model", "conv_vae", "--data", str(corpus), "--overrides", " ".join(overrides)])
    assert "windows from 12 songs (4 train, 4 val, 4 test), 0 skipped" in capsys.readouterr().out
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "FINISHED" and run.inputs.dataset_inputs
    parallel = open_cache(tmp_path / "cache" / run.data.params["data.cache_digest"])
    serial = prepare_features(load_config("conv_vae", tiny_overrides(tmp_path / "serial",
                                                                     f"data.source={corpus}")))
    assert np.array_equal(np.asarray(parallel.windows), np.asarray(serial.windows))


def _still_running(processes, seconds: float = 20.0) -> list:
    """Those of processes still running after up to `seconds` (a zombie has ended: in a container
    whose init does not reap orphans, it stays listed)."""
    import time

    import psutil

    def running(process) -> bool:
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
    deadline = time.time() + seconds
    while (left := [p for p in processes if running(p)]) and time.time() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.slow
def test_a_killed_prepare_leaves_no_worker_and_its_leftovers_are_cleared_by_the_next(
        corpus, tmp_path, mlflow_store):
    import signal
    import subprocess
    import sys
    import time

    import mlflow
    import psutil

    from components.config import PROJECT_ROOT
    from tests.conftest import tiny_overrides

    args = [sys.executable, "-m", "pipelines.prepare", "--model", "conv_vae", "--data", str(corpus),
            "--overrides", " ".join(tiny_overrides(tmp_path, "data.decode_workers=2"))]
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 120
    workers: list[psutil.Process] = []
    while time.time() < deadline and proc.poll() is None:
        building = list((tmp_path / "cache").glob(".building-*"))
        workers = parent.children(recursive=True)
        if building and len(workers) >= 3:  # the forkserver and both decode workers
            break
        time.sleep(0.05)
    assert proc.poll() is None and workers, "prepare finished before its workers could be seen"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not _still_running(workers), "decode workers outlived their killed parent"
    (killed,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert killed.info.status == "RUNNING"  # what SIGKILL leaves behind
    assert list((tmp_path / "cache").glob(".building-*"))

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "left by a prepare that was killed" in done.stderr
    assert f"prepare run {killed.info.run_id} was killed; marked KILLED" in done.stderr
    assert not list((tmp_path / "cache").glob(".building-*"))
    runs = {r.info.run_id: r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")}
    assert runs[killed.info.run_id].info.status == "KILLED"
    assert "ended without closing the run" in runs[killed.info.run_id].data.tags["stopped"]


@pytest.mark.slow
def test_sigterm_ends_a_prepare_run_killed_with_its_workers(corpus, tmp_path, mlflow_store):
    import signal
    import subprocess
    import sys
    import time

    import mlflow
    import psutil

    from components.config import PROJECT_ROOT
    from tests.conftest import tiny_overrides

    args = [sys.executable, "-m", "pipelines.prepare", "--model", "conv_vae", "--data", str(corpus),
            "--overrides", " ".join(tiny_overrides(tmp_path, "data.decode_workers=2"))]
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    workers: list[psutil.Process] = []
    while time.time() < deadline and proc.poll() is None and len(workers) < 3:
        time.sleep(0.05)  # the forkserver and both decode workers started (a SIGTERM during
        workers = psutil.Process(proc.pid).children(recursive=True)  # their start: stdlib noise)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err, err
    assert not _still_running(workers)
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    assert run.info.status == "KILLED" and "stopped by signal SIGTERM" in run.data.tags["error"]
    assert not list((tmp_path / "cache").glob(".building-*"))


def test_a_data_folder_without_audio_says_what_layout_is_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match=r"no audio files found; expected <root>/<language>/<genre>/"):
        read_catalog(tmp_path / "empty")
