"""Decode one song to mono at the target rate and turn it into log-mel windows."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import librosa
import numpy as np

from components.settings import FeatureSettings as FeatureSpec  # the features section

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")


class SongRejected(Exception):
    """A song that cannot contribute windows; the message is the reason shown in the report."""


def decode(path: Path, sample_rate: int, max_seconds: float = math.inf) -> np.ndarray:
    """Read any supported file at any rate / channel count as mono float32 at sample_rate.

    A file longer than max_seconds is refused before it is decoded (its header's duration), and
    never read past max_seconds in any case (a header can lie), so a decode worker's memory is
    bounded: a 3-hour file needed about 4 GB."""
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise SongRejected(
            f"unsupported extension '{path.suffix}' (supported: {', '.join(AUDIO_EXTENSIONS)})"
        )
    if path.stat().st_size == 0:
        raise SongRejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # librosa warns before falling back to audioread for mp3; the fallback is the point.
            warnings.simplefilter("ignore")
            _refuse_longer(max_seconds, librosa.get_duration(path=path))
            limit = None if math.isinf(max_seconds) else max_seconds + 1.0
            samples, _ = librosa.load(path, sr=sample_rate, mono=True, res_type="soxr_hq", duration=limit)
        _refuse_longer(max_seconds, len(samples) / sample_rate)
    except SongRejected:
        raise
    except librosa.util.exceptions.ParameterError as err:
        if "finite" in str(err):  # librosa refuses NaN/inf while mixing down or resampling
            raise SongRejected("contains NaN or infinite samples") from err
        raise SongRejected(f"cannot be decoded ({err})") from err
    except Exception as err:  # decoders raise many types for corrupt data; all mean "unreadable"
        raise SongRejected(f"cannot be decoded ({type(err).__name__}: {err})") from err
    return samples.astype(np.float32, copy=False)


def _refuse_longer(max_seconds: float, seconds: float) -> None:
    if seconds > max_seconds:
        raise SongRejected(f"longer than features.max_song_seconds={max_seconds:g} ({seconds:.0f} s): cut "
                           f"it into parts, or raise the limit (about 1.3 GB of decode memory per hour)")


def window_starts(n_samples: int, spec: FeatureSpec) -> list[int]:
    """Window start samples: every hop while a full window fits, plus one end-aligned window
    when the uncovered tail is at least min_tail_seconds (no padding, no partial windows)."""
    win, hop = spec.window_samples, spec.hop_samples
    if n_samples < win:
        return []
    starts = list(range(0, n_samples - win + 1, hop))
    tail = n_samples - (starts[-1] + win)
    if tail >= spec.min_tail_seconds * spec.sample_rate:
        starts.append(n_samples - win)
    return starts


def check_song(samples: np.ndarray, spec: FeatureSpec) -> None:
    """Raise SongRejected for audio that would poison training (NaN, silence, too short)."""
    if not np.all(np.isfinite(samples)):
        raise SongRejected("contains NaN or infinite samples")
    seconds = len(samples) / spec.sample_rate
    if seconds < spec.window_seconds:
        raise SongRejected(
            f"too short: {seconds:.1f} s < one {spec.window_seconds:.0f} s window"
        )
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    peak_db = 20 * np.log10(max(peak, 1e-12))
    if peak_db < spec.silence_db:
        raise SongRejected(f"silent: peak {peak_db:.1f} dBFS < {spec.silence_db:.0f} dBFS")


def log_mel(window: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """[window_samples] -> log-mel in dB, [n_mels, frames] float32."""
    power = librosa.feature.melspectrogram(
        y=window, sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length,
        n_mels=spec.n_mels, power=2.0,
    )
    # Absolute dB (ref 1.0, no top_db): per-window max references would erase loudness cues.
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None).astype(np.float32)


def song_windows(path: Path, spec: FeatureSpec) -> tuple[np.ndarray, list[int]]:
    """Decode a song and return its log-mel windows [n, n_mels, frames] float16 and start samples."""
    samples = decode(path, spec.sample_rate, spec.max_song_seconds)
    check_song(samples, spec)
    starts = window_starts(len(samples), spec)
    mels = np.stack([log_mel(samples[s : s + spec.window_samples], spec) for s in starts])
    return mels.astype(np.float16), starts
