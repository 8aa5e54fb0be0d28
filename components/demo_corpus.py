"""Generate the platform's demo data: a deterministic synthetic corpus of 4 languages x 3 genres."""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import fft as sp_fft
from scipy import signal

from components.config import ConfigError

LANGUAGES = ("arabic", "english", "hindi", "spanish")
GENRES = ("hiphop", "pop", "rock")

# (extension, sample rate, channels, soundfile format, subtype): a realistic mix of what users own.
_FORMATS = (
    ("wav", 22050, 1, "WAV", "PCM_16"),
    ("flac", 44100, 2, "FLAC", "PCM_16"),
    ("ogg", 32000, 1, "OGG", "VORBIS"),
)
_PEAK = 0.9
# Songs are synthesised at most at this rate and resampled up: it is the rate the platform
# analyses at, and rendering 44.1 kHz directly would double the generation time.
_SYNTH_RATE = 22050
_WRITE_BLOCK = 16384  # frames per write call

# --------------------------------------------------------------------------------------------
# Small DSP helpers
# --------------------------------------------------------------------------------------------


def _hz(midi: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _filter(x: np.ndarray, kind: str, cutoff, sr: int, order: int = 2) -> np.ndarray:
    nyq_safe = 0.45 * sr
    if kind == "bandpass":
        hi = min(cutoff[1], nyq_safe)
        # Tests run at low rates: a band above Nyquist shrinks to the top octave, not an error.
        lo = min(max(cutoff[0], 20.0), 0.5 * hi)
        cutoff = (lo, hi)
    else:
        cutoff = min(max(cutoff, 20.0), nyq_safe)
    sos = signal.butter(order, cutoff, btype=kind, fs=sr, output="sos")
    return signal.sosfilt(sos, x)


_TABLE = 4096
_SINE = np.sin(2 * np.pi * np.arange(_TABLE) / _TABLE).astype(np.float32)
# Naive saw and square: aliasing is harmless here and band-limiting would double the cost.
_SAW = (2.0 * np.arange(_TABLE) / _TABLE - 1.0).astype(np.float32)
_SQUARE = np.where(np.arange(_TABLE) < _TABLE // 2, 1.0, -1.0).astype(np.float32)


def _wave(cycles: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Wavetable oscillator: a lookup is several times faster than np.sin on the phase."""
    return table[(cycles * _TABLE).astype(np.int64) & (_TABLE - 1)]


def _saw(cycles: np.ndarray) -> np.ndarray:
    return _wave(cycles, _SAW)


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """White noise, unit variance; uniform draws cost a third of Gaussian ones."""
    x = rng.random(n, dtype=np.float32)
    x -= np.float32(0.5)
    x *= np.float32(np.sqrt(12.0))
    return x


def _rms_normalise(x: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x * x)))
    return x / rms if rms > 1e-9 else x


def _place(n: int, sr: int, times: np.ndarray, vels: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """Sum copies of a one-shot at the given times."""
    out = np.zeros(n)
    # A few hundred slice-adds beat a full-length FFT convolution by an order of magnitude.
    for p, v in zip(np.round(np.asarray(times) * sr).astype(np.int64), vels):
        if 0 <= p < n:
            m = min(hit.size, n - p)
            out[p: p + m] += v * hit[:m]
    return out


def _notes(n: int, sr: int, starts, durs, midis, vels, attack: float, decay: float,
           release: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """Note list -> per-sample frequency (Hz) and amplitude envelope, vectorised.

    midis is [notes] or [voices, notes]: voices share onsets and one envelope, as in a chord.
    """
    starts = np.asarray(starts, dtype=np.float64)
    order = np.argsort(starts, kind="stable")
    s = np.round(starts[order] * sr).astype(np.int64)
    d = np.asarray(durs, dtype=np.float32)[order]
    f = _hz(np.asarray(midis)[..., order]).astype(np.float32)
    v = np.asarray(vels, dtype=np.float32)[order]
    keep = (s < n) & (s >= 0)
    s, d, f, v = s[keep], d[keep], f[..., keep], v[keep]
    if s.size == 0:
        return np.full(f.shape[:-1] + (n,), 100.0, dtype=np.float32), np.zeros(n, np.float32)
    # float32 throughout: exact for sample counts below 2**24 and half the memory traffic.
    seg = np.diff(np.append(s, n))
    idx = np.concatenate([np.zeros(s[0], dtype=np.int32),
                          np.repeat(np.arange(s.size, dtype=np.int32), seg)])
    t = np.arange(n, dtype=np.float32)
    t -= s.astype(np.float32)[idx]
    t *= np.float32(1.0 / sr)
    env = np.exp(t * np.float32(-1.0 / decay))
    env *= np.minimum(t * np.float32(1.0 / attack), np.float32(1.0))
    gate = d[idx] - t
    gate *= np.float32(1.0 / release)
    env *= np.clip(gate, 0.0, 1.0)
    env *= v[idx]
    env[: s[0]] = 0.0
    return f[..., idx], env


def _osc_cycles(freq: np.ndarray, sr: int, phase0: float | np.ndarray = 0.0) -> np.ndarray:
    """Oscillator phase in cycles; scale the result to detune without another cumsum."""
    # float64 accumulation: float32 would drift by cents over a minute of samples.
    return phase0 + np.cumsum(freq, axis=-1, dtype=np.float64) / sr


def _cents(c: float) -> float:
    return 2.0 ** (c / 1200.0)


# --------------------------------------------------------------------------------------------
# Drum one-shots
# --------------------------------------------------------------------------------------------


def _kick(sr: int, rng: np.random.Generator, f_end: float, decay: float, click: float):
    t = np.arange(int(sr * min(5 * decay, 0.9))) / sr
    f = f_end + (rng.uniform(110, 180) - f_end) * np.exp(-t / rng.uniform(0.02, 0.05))
    body = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / decay)
    return body + click * rng.standard_normal(t.size) * np.exp(-t / 0.004)


def _snare(sr: int, rng: np.random.Generator, tone: float, decay: float, bright: float):
    t = np.arange(int(sr * 5 * decay)) / sr
    body = np.sin(2 * np.pi * tone * t) * np.exp(-t / 0.05)
    noise = _filter(rng.standard_normal(t.size), "bandpass", (900, bright), sr)
    return 0.5 * body + 2.0 * noise * np.exp(-t / decay)


def _clap(sr: int, rng: np.random.Generator):
    t = np.arange(int(sr * 0.4)) / sr
    env = sum(np.exp(-np.maximum(t - o, 0) / 0.004) * (t >= o) for o in (0.0, 0.011, 0.022))
    env = env + 0.6 * np.exp(-t / rng.uniform(0.08, 0.15))
    return _filter(rng.standard_normal(t.size), "bandpass", (900, 3200), sr) * env * 2.0


def _hat(sr: int, rng: np.random.Generator, decay: float):
    t = np.arange(int(sr * 6 * decay)) / sr
    return _filter(rng.standard_normal(t.size), "highpass", 7000, sr, 4) * np.exp(-t / decay)


def _cymbal(sr: int, rng: np.random.Generator, decay: float, bell: float):
    t = np.arange(int(sr * 4 * decay)) / sr
    # Inharmonic square partials give the metallic ring a pure noise burst lacks.
    ratios = np.array([1.0, 1.48, 1.81, 2.55, 2.63, 3.9])
    partials = np.sign(np.sin(2 * np.pi * rng.uniform(300, 420) * ratios[:, None] * t)).sum(0)
    x = rng.standard_normal(t.size) + bell * partials
    return _filter(x, "highpass", 3500, sr, 2) * np.exp(-t / decay) * 0.7


# --------------------------------------------------------------------------------------------
# Harmony
# --------------------------------------------------------------------------------------------

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS = ((0, 5, 3, 4), (0, 4, 5, 3), (5, 3, 0, 4), (0, 3, 4, 3), (0, 6, 5, 6), (0, 5, 2, 6))


def _chord(scale: tuple[int, ...], degree: int, size: int = 3) -> list[int]:
    """Stacked thirds on a scale degree, in semitones above the key root."""
    return [scale[(degree + 2 * k) % 7] + 12 * ((degree + 2 * k) // 7) for k in range(size)]


@dataclass(frozen=True)
class _Song:
    """Timing and harmony shared by the backing track and the vocal line."""

    n: int  # samples to render
    n_bars: int  # bars to fill with notes and hits
    sr: int
    bpm: float
    key: int  # pitch class of the root
    scale: tuple[int, ...]
    progression: tuple[int, ...]
    bars_per_chord: int
    intro_bars: int

    @property
    def beat(self) -> float:
        return 60.0 / self.bpm

    @property
    def bar(self) -> float:
        return 4.0 * self.beat

    @property
    def loop_bars(self) -> int:
        return len(self.progression) * self.bars_per_chord

    def chord_at_bar(self, b: int) -> int:
        return self.progression[(b // self.bars_per_chord) % len(self.progression)]


def _hits(song: _Song, steps, rng: np.random.Generator, swing: float = 0.0, keep: float = 1.0,
          jitter: float = 0.004, bars: np.ndarray | None = None, vel=(0.8, 1.0)):
    """Drum hit times on a 16th grid for each bar; odd 16ths are delayed by `swing` of a step."""
    if bars is None:
        bars = np.arange(song.n_bars)
    s = np.asarray(steps, dtype=np.float64)
    step = song.beat / 4
    t = (bars[:, None] * song.bar + (s + swing * (s % 2))[None, :] * step).ravel()
    t = t + rng.normal(0.0, jitter, t.size)
    mask = rng.random(t.size) < keep
    return t[mask], rng.uniform(vel[0], vel[1], t.size)[mask]


# --------------------------------------------------------------------------------------------
# Genres: each renders one loop (song.n_bars bars, ringing on to song.n samples) as
# [(stem, pan in [-1, 1], level dB, role)]; levels apply after RMS normalisation, and the
# arrangement (intro, breakdown) is applied per role when the loop is tiled.
# --------------------------------------------------------------------------------------------


def _hiphop(song: _Song, rng: np.random.Generator):
    n, sr = song.n, song.sr
    swing = rng.uniform(0.15, 0.4)
    kick_pat = [(0, 10), (0, 3, 10), (0, 7, 9), (0, 6, 10, 11), (0, 8, 10)][rng.integers(5)]
    kt, kv = _hits(song, kick_pat, rng, swing)
    st, sv = _hits(song, (4, 12), rng, swing, jitter=0.008)
    gt, gv = _hits(song, (7, 15), rng, swing, keep=0.25, vel=(0.15, 0.3))
    hat_steps = tuple(range(0, 16, 2)) if rng.random() < 0.6 else tuple(range(16))
    ht, hv = _hits(song, hat_steps, rng, swing, keep=rng.uniform(0.45, 0.8), vel=(0.3, 0.8))
    kick = _place(n, sr, kt, kv, _kick(sr, rng, rng.uniform(45, 58), rng.uniform(0.18, 0.35), 0.2))
    snare_hit = _snare(sr, rng, rng.uniform(160, 210), rng.uniform(0.12, 0.22), 5000)
    snare = _place(n, sr, np.concatenate([st, gt]), np.concatenate([sv, gv]), snare_hit)
    hats = _place(n, sr, ht, hv, _hat(sr, rng, rng.uniform(0.02, 0.05)))

    # Sub-bass follows the kick pattern with long notes on the chord root.
    bass_midi = 28 + (song.key + 4) % 12
    bars = np.floor(kt / song.bar).astype(int)
    roots = np.array([bass_midi + _chord(song.scale, song.chord_at_bar(b))[0] for b in bars])
    f, env = _notes(n, sr, kt, np.full(kt.size, song.beat * 1.5), roots, np.ones(kt.size),
                    0.005, rng.uniform(0.4, 0.9), 0.06)
    cyc = _osc_cycles(f, sr)
    sub = np.tanh(1.5 * _wave(cyc, _SINE)) * env

    # Lo-fi electric piano: one chord per chord change, darkened and wobbling like a sample.
    chord_bars = np.arange(0, song.n_bars, song.bars_per_chord)
    base = 55 + song.key % 12
    wow = 1.0 + 0.002 * _wave(rng.uniform(0.3, 0.8) * np.arange(n, dtype=np.float32) / sr, _SINE)
    midis = np.array([[base + _chord(song.scale, song.chord_at_bar(b), 4)[k] for b in chord_bars]
                      for k in range(4)])
    f, env = _notes(n, sr, chord_bars * song.bar, np.full(chord_bars.size, song.bar * 2.0),
                    midis, np.ones(chord_bars.size), 0.01, rng.uniform(1.0, 2.0), 0.2)
    cyc = _osc_cycles(f * wow, sr, phase0=rng.random((4, 1)))
    keys = (_wave(cyc, _SINE) + 0.25 * _wave(2 * cyc, _SINE)).sum(0) * env
    keys = _filter(keys, "lowpass", rng.uniform(1200, 3000), sr)

    stems = [(kick, 0.0, 0.0, "drums"), (snare, 0.0, -3.0, "drums"),
             (hats, rng.uniform(-0.4, 0.4), -12.0, "drums"), (sub, 0.0, -1.0, "bass"),
             (keys, rng.uniform(-0.3, 0.3), -5.0, "harmony")]
    if rng.random() < 0.5:
        crackle = np.zeros(n)
        pops = int(n / sr * 15)
        np.add.at(crackle, rng.integers(0, n, pops), rng.uniform(0.2, 1.0, pops))
        stems.append((_filter(crackle, "highpass", 2000, sr), 0.0, rng.uniform(-30, -20),
                      "harmony"))
    return stems


def _pop(song: _Song, rng: np.random.Generator):
    n, sr = song.n, song.sr
    kt, kv = _hits(song, (0, 4, 8, 12), rng, jitter=0.001, vel=(0.9, 1.0))
    ct, cv = _hits(song, (4, 12), rng, jitter=0.002)
    ht, hv = _hits(song, (2, 6, 10, 14), rng, jitter=0.002, vel=(0.5, 0.8))
    qt, qv = _hits(song, (1, 3, 5, 7, 9, 11, 13, 15), rng, keep=rng.uniform(0, 0.7), vel=(0.2, 0.4))
    kick = _place(n, sr, kt, kv, _kick(sr, rng, rng.uniform(48, 60), rng.uniform(0.12, 0.22), 0.5))
    clap = _place(n, sr, ct, cv, _clap(sr, rng))
    hats = _place(n, sr, np.concatenate([ht, qt]), np.concatenate([hv, qv]),
                  _hat(sr, rng, rng.uniform(0.03, 0.07)))

    # Sidechain-style pumping on every beat is the genre's signature movement.
    since_beat = (np.arange(n) / sr) % song.beat
    pump = 1.0 - rng.uniform(0.3, 0.7) * np.exp(-since_beat / 0.08)

    chord_bars = np.arange(0, song.n_bars, song.bars_per_chord)
    base = 60 + song.key % 12 - (12 if song.key % 12 > 6 else 0)
    stab = rng.random() < 0.5
    midis = np.array([[base + (_chord(song.scale, song.chord_at_bar(b)) + [12])[k]
                       for b in chord_bars] for k in range(4)])
    if stab:  # offbeat 8th stabs instead of sustained pads
        offs = np.arange(1, 8, 2) * song.beat / 2
        starts = (chord_bars[:, None] * song.bar + offs[None, :]).ravel()
        midis = np.repeat(midis, offs.size, axis=1)
        durs, decay = np.full(starts.size, song.beat * 0.45), 0.25
    else:
        starts = chord_bars * song.bar
        durs, decay = np.full(starts.size, song.bar * song.bars_per_chord), 4.0
    f, env = _notes(n, sr, starts, durs, midis, np.ones(starts.size), 0.01, decay, 0.05)
    cyc = _osc_cycles(f, sr)
    synth = np.zeros(n)
    for cents in (-12.0, 12.0):  # detuned pair per chord tone: the "supersaw" brightness
        detune = _cents(cents + rng.uniform(-4, 4))
        synth += _saw(cyc * detune + rng.random((4, 1))).sum(0)
    synth = _filter(_filter(synth * env, "lowpass", rng.uniform(4000, 9000), sr), "highpass",
                    180, sr)
    synth *= pump

    eighths = np.arange(song.n_bars * 8) * song.beat / 2
    bass_midi = 36 + song.key % 12 - (12 if song.key % 12 > 7 else 0)
    roots = [bass_midi + _chord(song.scale, song.chord_at_bar(int(x // song.bar)))[0]
             + 12 * (i % 2 == 1 and rng.random() < 0.5) for i, x in enumerate(eighths)]
    f, env = _notes(n, sr, eighths, np.full(eighths.size, song.beat * 0.4), roots,
                    np.ones(eighths.size), 0.004, 0.3, 0.02)
    bass = _filter(_saw(_osc_cycles(f, sr)) * env, "lowpass", rng.uniform(350, 900), sr) * pump

    stems = [(kick, 0.0, 0.0, "drums"), (clap, 0.0, -3.0, "drums"),
             (hats, rng.uniform(-0.5, 0.5), -10.0, "drums"), (synth, 0.0, -3.0, "harmony"),
             (bass, 0.0, -3.0, "bass")]
    if rng.random() < 0.6:
        sixteenths = np.arange(song.n_bars * 16) * song.beat / 4
        arp = [base + 12 + _chord(song.scale, song.chord_at_bar(int(x // song.bar)))[i % 3]
               for i, x in enumerate(sixteenths)]
        f, env = _notes(n, sr, sixteenths, np.full(sixteenths.size, song.beat / 4), arp,
                        np.ones(sixteenths.size), 0.002, 0.08)
        lead = _wave(_osc_cycles(f, sr), _SQUARE) * env
        stems.append((_filter(lead, "lowpass", 5000, sr), rng.uniform(-0.6, 0.6), -12.0,
                      "harmony"))
    return stems


def _rock(song: _Song, rng: np.random.Generator):
    n, sr = song.n, song.sr
    kick_pat = (0, 8) if rng.random() < 0.5 else (0, 6, 8, 10)
    kt, kv = _hits(song, kick_pat, rng, jitter=0.004)
    st, sv = _hits(song, (4, 12), rng, jitter=0.004)
    rt, rv = _hits(song, tuple(range(0, 16, 2)), rng, jitter=0.004, vel=(0.5, 0.9))
    crash_bars = np.arange(0, song.n_bars, 4)
    xt, xv = _hits(song, (0,), rng, bars=crash_bars)
    kick = _place(n, sr, kt, kv, _kick(sr, rng, rng.uniform(55, 70), rng.uniform(0.1, 0.18), 0.8))
    snare = _place(n, sr, st, sv, _snare(sr, rng, rng.uniform(200, 250), rng.uniform(0.1, 0.16),
                                         9000))
    ride = rng.random() < 0.5
    ride_hit = _cymbal(sr, rng, 0.35, 0.4) if ride else _hat(sr, rng, rng.uniform(0.06, 0.15))
    cymbals = _place(n, sr, rt, rv, ride_hit)
    cymbals += _place(n, sr, xt, xv * 1.5, _cymbal(sr, rng, rng.uniform(0.8, 1.5), 0.15))

    # Power chords: root, fifth and octave, chugged on 8ths or held, double-tracked left/right.
    eighths = np.arange(song.n_bars * 8) * song.beat / 2
    chug = rng.random() < 0.6
    gtr_root = 40 + song.key % 12 - (12 if song.key % 12 > 9 else 0)
    chord_roots = np.array([gtr_root + _chord(song.scale, song.chord_at_bar(int(x // song.bar)))[0]
                            for x in eighths])
    if chug:
        starts, roots = eighths, chord_roots
        durs, decay = np.full(eighths.size, song.beat * 0.48), rng.uniform(0.12, 0.3)
    else:
        starts, roots = eighths[::8], chord_roots[::8]
        durs, decay = np.full(starts.size, song.bar), 3.0
    gain = rng.uniform(6, 25)
    guitars = []
    for _take in range(2):
        f, env = _notes(n, sr, starts + rng.normal(0, 0.006, starts.size), durs, roots,
                        rng.uniform(0.8, 1.0, starts.size), 0.003, decay)
        cyc = _osc_cycles(f, sr)
        take = sum(_saw(cyc * (2 ** (i / 12) * _cents(rng.uniform(-8, 8))) + rng.random())
                   for i in (0, 7, 12)) * env
        take = np.clip(np.tanh(gain * _filter(take, "highpass", 90, sr)), -0.8, 0.8)
        guitars.append(_filter(take, "lowpass", rng.uniform(3000, 5500), sr, 4))

    f, env = _notes(n, sr, eighths, np.full(eighths.size, song.beat * 0.45), chord_roots - 12,
                    np.ones(eighths.size), 0.004, 0.4)
    bass = np.tanh(2.0 * _saw(_osc_cycles(f, sr)) * env)
    bass = _filter(bass, "lowpass", rng.uniform(700, 1400), sr)

    spread = rng.uniform(0.5, 0.9)
    return [(kick, 0.0, 0.0, "drums"), (snare, 0.0, -1.0, "drums"),
            (cymbals, rng.uniform(-0.3, 0.3), -9.0, "drums"), (guitars[0], -spread, -2.0, "harmony"),
            (guitars[1], spread, -2.0, "harmony"), (bass, 0.0, -4.0, "bass")]


_GENRE_RENDER = {"hiphop": _hiphop, "pop": _pop, "rock": _rock}
_GENRE_TEMPO = {"hiphop": (80.0, 95.0), "pop": (100.0, 125.0), "rock": (130.0, 165.0)}
_GENRE_MINOR = {"hiphop": 0.8, "pop": 0.3, "rock": 0.5}


# --------------------------------------------------------------------------------------------
# Vocal line: glottal source + per-frame formant envelope, language-specific phonotactics
# --------------------------------------------------------------------------------------------

# Consonants: (kind, noise centre Hz, noise spread Hz, duration s, level)
_CONSONANTS = {
    "s": ("fric", 6500, 1500, 0.09, 0.45),
    "sh": ("fric", 3300, 800, 0.10, 0.5),
    "th": ("fric", 5000, 3000, 0.07, 0.15),
    "phar": ("fric", 1300, 450, 0.11, 0.35),  # pharyngeal / glottal fricatives sit low
    "kh": ("fric", 1900, 600, 0.10, 0.4),
    "stop": ("burst", 2800, 1500, 0.02, 0.5),
    "q": ("burst", 1100, 350, 0.03, 0.6),
    "retro": ("burst", 2100, 450, 0.025, 0.6),  # retroflex release: low, narrow burst
    "t_asp": ("asp", 4000, 2000, 0.07, 0.45),
    "asp": ("asp", 1800, 1000, 0.08, 0.45),
    "son": ("son", 0, 0, 0.07, 0.35),
    "trill": ("trill", 0, 0, 0.08, 0.6),
    "none": ("none", 0, 0, 0.0, 0.0),
}


@dataclass(frozen=True)
class _LanguageStyle:
    vowels: dict[str, tuple[float, float, float]]
    diphthongs: tuple[tuple[str, str], ...]
    diphthong_prob: float
    syllable_seconds: tuple[float, float]
    long_prob: float
    long_factor: tuple[float, float]
    onsets: dict[str, float]
    codas: dict[str, float]
    glide_seconds: float  # portamento time between notes
    melisma_prob: float  # long vowels carried over several notes
    vibrato: tuple[float, float]  # rate Hz, depth semitones
    scoop: float  # semitones below target at a stressed onset
    gamak_prob: float  # wide pitch oscillation on a long note
    nasal_prob: float
    breath: float  # aspiration noise mixed into voiced sounds
    # Singing style: a "singer's formant" ring (Hz, gain) and spectral tilt above 1 kHz
    # (dB/octave) - what a listener hears as a bright, belted or a soft, breathy voice.
    ring: tuple[float, float]
    tilt: float
    stress_timed: bool
    scales: tuple[tuple[int, ...], ...]  # language-typical modes, used part of the time
    scale_prob: float


_STYLES = {
    "arabic": _LanguageStyle(
        vowels={"a": (700, 1150, 2500), "A": (660, 950, 2450), "i": (290, 2100, 2800),
                "u": (320, 760, 2300)},
        diphthongs=(("a", "i"), ("a", "u")), diphthong_prob=0.08,
        syllable_seconds=(0.18, 0.3), long_prob=0.45, long_factor=(1.9, 2.8),
        onsets={"phar": 0.2, "kh": 0.12, "q": 0.1, "sh": 0.1, "stop": 0.13, "s": 0.08,
                "son": 0.22, "none": 0.05},
        codas={"none": 0.7, "son": 0.15, "stop": 0.1, "kh": 0.05},
        glide_seconds=0.035, melisma_prob=0.7, vibrato=(5.8, 0.3), scoop=0.0,
        gamak_prob=0.0, nasal_prob=0.0, breath=0.05, ring=(3000, 0.45), tilt=1.0,
        stress_timed=False,
        scales=((0, 1, 4, 5, 7, 8, 10), (0, 2, 3, 5, 7, 8, 10)), scale_prob=0.6,
    ),
    "english": _LanguageStyle(
        vowels={"@": (500, 1450, 2500), "I": (400, 1950, 2550), "E": (580, 1800, 2550),
                "ae": (690, 1650, 2450), "V": (630, 1200, 2550), "A": (730, 1100, 2450),
                "U": (450, 1050, 2350), "3r": (490, 1350, 1690), "i": (290, 2250, 2900),
                "e": (480, 1900, 2550), "o": (520, 950, 2450)},
        diphthongs=(("A", "I"), ("e", "i"), ("o", "U"), ("A", "U")), diphthong_prob=0.35,
        syllable_seconds=(0.24, 0.4), long_prob=0.0, long_factor=(1.0, 1.0),
        onsets={"s": 0.15, "t_asp": 0.18, "th": 0.1, "stop": 0.12, "son": 0.3, "sh": 0.05,
                "none": 0.1},
        codas={"none": 0.5, "s": 0.15, "stop": 0.2, "son": 0.15},
        glide_seconds=0.06, melisma_prob=0.05, vibrato=(5.2, 0.25), scoop=1.5,
        gamak_prob=0.0, nasal_prob=0.05, breath=0.3, ring=(2800, 0.0), tilt=-4.5,
        stress_timed=True,
        scales=(), scale_prob=0.0,
    ),
    "hindi": _LanguageStyle(
        vowels={"@": (550, 1400, 2600), "aa": (750, 1250, 2600), "i": (320, 2250, 2950),
                "e": (420, 2050, 2750), "E": (600, 1850, 2650), "o": (450, 850, 2550),
                "u": (330, 850, 2450)},
        diphthongs=(), diphthong_prob=0.0,
        syllable_seconds=(0.16, 0.26), long_prob=0.35, long_factor=(1.4, 1.9),
        onsets={"retro": 0.2, "asp": 0.2, "stop": 0.15, "s": 0.05, "sh": 0.05, "son": 0.25,
                "none": 0.1},
        codas={"none": 0.8, "son": 0.2},
        glide_seconds=0.18, melisma_prob=0.2, vibrato=(4.8, 0.2), scoop=0.0,
        gamak_prob=0.3, nasal_prob=0.5, breath=0.06, ring=(3300, 0.25), tilt=4.0,
        stress_timed=False,
        scales=((0, 1, 4, 5, 7, 8, 11), (0, 2, 3, 5, 7, 9, 10)), scale_prob=0.5,
    ),
    "spanish": _LanguageStyle(
        vowels={"a": (750, 1350, 2550), "e": (460, 1850, 2600), "i": (300, 2250, 2950),
                "o": (480, 920, 2500), "u": (320, 760, 2400)},
        diphthongs=(("u", "e"), ("i", "e")), diphthong_prob=0.06,
        syllable_seconds=(0.09, 0.14), long_prob=0.05, long_factor=(2.0, 3.0),
        onsets={"s": 0.12, "stop": 0.25, "trill": 0.15, "son": 0.33, "none": 0.15},
        codas={"none": 0.65, "s": 0.2, "son": 0.15},
        glide_seconds=0.02, melisma_prob=0.0, vibrato=(6.0, 0.15), scoop=0.0,
        gamak_prob=0.0, nasal_prob=0.0, breath=0.04, ring=(2900, 0.15), tilt=-1.0,
        stress_timed=False,
        scales=(), scale_prob=0.0,
    ),
}


_MELODY_STEPS = (-2, -1, -1, 0, 1, 1, 2)  # mostly stepwise, as sung melodies move


def _choice(rng: np.random.Generator, table: dict[str, float]) -> str:
    # Called thousands of times per song: a plain scan beats building arrays for rng.choice.
    u = rng.random() * sum(table.values())
    for key, weight in table.items():
        u -= weight
        if u < 0:
            return key
    return key


def _ramp_env(length: int, attack: int, release: int) -> np.ndarray:
    i = np.arange(length, dtype=np.float64)
    return np.minimum(np.minimum((i + 1) / max(attack, 1), (length - i) / max(release, 1)), 1.0)


def _vocal(song: _Song, language: str, rng: np.random.Generator) -> np.ndarray:
    """A sung line over the whole song: per-frame vowel formants, consonant noise and pitch
    are laid out syllable by syllable, then a glottal saw and a noise source are shaped by
    them in the STFT domain."""
    style = _STYLES[language]
    n, sr = song.n, song.sr
    win = 1 << int(np.ceil(np.log2(0.02 * sr)))
    hop = win // 2
    frames = n // hop + 2
    frame_rate = sr / hop

    female = rng.random() < 0.5
    low = rng.uniform(55, 62) if female else rng.uniform(43, 50)
    formant_scale = (1.08 if female else 1.0) * rng.uniform(0.95, 1.05)
    use_own = style.scales and rng.random() < style.scale_prob
    scale = style.scales[rng.integers(len(style.scales))] if use_own else song.scale
    degrees = np.array([s + 12 * o for o in range(3) for s in scale])
    base = low + ((song.key - low) % 12)  # keep the melody in the song's key
    base -= 12 if base > low + 6 else 0

    formants = np.tile(np.array([[500.0], [1500.0], [2500.0]]), (1, frames))
    voiced = np.zeros(frames)
    noise = np.zeros(frames)
    breath = np.zeros(frames)
    noise_fc = np.full(frames, 3000.0)
    noise_bw = np.full(frames, 1000.0)
    nasal = np.zeros(frames)
    pitch = np.full(frames, np.nan)
    ornament = np.zeros(frames)  # scoops and gamak, in semitones
    age = np.zeros(frames)  # seconds into the current note, to delay vibrato

    def fr(t: float) -> int:
        return min(round(t * frame_rate), frames)

    t = song.intro_bars * song.bar + rng.uniform(0, song.beat)
    end = n / sr - 0.5
    degree = int(rng.integers(2, 6))
    vowel_names = list(style.vowels)
    while t < end:
        phrase_end = min(t + song.bar * rng.uniform(1.5, 3.0), end)
        syllable = 0
        foot = int(rng.integers(2, 4))  # stress-timed: one stressed syllable per foot
        while t < phrase_end:
            onset = _choice(rng, style.onsets)
            kind, fc, bw, cdur, clevel = _CONSONANTS[onset]
            c0, c1 = fr(t), fr(t + cdur)
            if kind in ("fric", "burst", "asp"):
                burst_end = c1 if kind == "fric" else min(c1, c0 + max(2, fr(0.015)))
                noise[c0:burst_end] = clevel * _ramp_env(burst_end - c0, 2, 2)
                noise_fc[c0:burst_end], noise_bw[c0:burst_end] = fc, bw
                if kind == "asp":
                    breath[burst_end:c1] = 0.5
            elif kind in ("son", "trill"):
                voiced[c0:c1] = 0.35 if kind == "son" else 0.6
                formants[:, c0:c1] = np.array([[300.0], [1300.0], [2500.0]]) * formant_scale
                if kind == "son":
                    nasal[c0:c1] = 0.8
                else:  # tongue-tip trill: ~25 Hz amplitude flutter
                    tt = np.arange(c1 - c0) / frame_rate
                    voiced[c0:c1] *= 0.5 + 0.5 * (np.sin(2 * np.pi * 25 * tt) > 0)
            t += cdur

            stressed = not style.stress_timed or syllable % foot == 0
            syllable += 1
            dur = rng.uniform(*style.syllable_seconds)
            if style.stress_timed and not stressed:
                dur *= 0.4
                v_start = v_end = ("@", "I")[rng.integers(2)]
            else:
                v_start = vowel_names[rng.integers(len(vowel_names))]
                v_end = v_start
                if style.diphthongs and rng.random() < style.diphthong_prob:
                    v_start, v_end = style.diphthongs[rng.integers(len(style.diphthongs))]
            is_long = rng.random() < style.long_prob
            if is_long:
                dur *= rng.uniform(*style.long_factor)
            v0, v1 = fr(t), fr(t + dur)
            m = v1 - v0
            if m > 0:
                amp = (1.0 if stressed else 0.55) * rng.uniform(0.8, 1.0)
                voiced[v0:v1] = amp * _ramp_env(m, fr(0.02), fr(0.04))
                fa = np.array(style.vowels[v_start])[:, None] * formant_scale
                fb = np.array(style.vowels[v_end])[:, None] * formant_scale
                p = np.linspace(0.0, 1.0, m)[None, :]
                p = p * p * (3 - 2 * p)
                formants[:, v0:v1] = fa + (fb - fa) * p
                if onset == "retro":  # retroflex: F3 dips into the vowel onset
                    formants[2, v0:v1] *= 1 - 0.2 * np.exp(-np.arange(m) / frame_rate / 0.04)
                if rng.random() < style.nasal_prob:
                    nasal[v0:v1] = rng.uniform(0.5, 1.0)
                breath[v0:v1] = style.breath

                degree = min(max(degree + _MELODY_STEPS[rng.integers(7)], 0), 10)
                notes = [degree]
                if is_long and rng.random() < style.melisma_prob:
                    turn = int(rng.integers(3, 6))
                    notes = [int(np.clip(degree + s, 0, 11)) for s in
                             ([0, 1, 0, -1, 0, 1][:turn])]
                bounds = np.linspace(v0, v1, len(notes) + 1).astype(int)
                for a, b, d in zip(bounds[:-1], bounds[1:], notes):
                    pitch[a:b] = base + degrees[d]
                age[v0:v1] = np.arange(m) / frame_rate
                if style.scoop and stressed:
                    ornament[v0:v1] -= style.scoop * np.exp(-np.arange(m) / frame_rate / 0.06)
                if is_long and rng.random() < style.gamak_prob:
                    tt = np.arange(m) / frame_rate
                    ornament[v0:v1] += 1.0 * np.sin(2 * np.pi * 4.5 * tt) * np.minimum(tt / 0.1, 1)
            t += dur
            coda = _choice(rng, style.codas)
            kind, fc, bw, cdur, clevel = _CONSONANTS[coda]
            c0, c1 = fr(t), fr(t + cdur * 0.7)
            if kind in ("fric", "burst"):
                noise[c0:c1] = clevel * 0.7 * _ramp_env(c1 - c0, 2, 2)
                noise_fc[c0:c1], noise_bw[c0:c1] = fc, bw
            elif kind == "son":
                voiced[c0:c1] = 0.3
                formants[:, c0:c1] = np.array([[280.0], [1200.0], [2500.0]]) * formant_scale
                nasal[c0:c1] = 0.8
            t += cdur * 0.7 + rng.uniform(0.0, 0.03)
        last = fr(t)
        first = max(0, last - fr(0.15))
        if rng.random() < 0.7 and last > first:  # phrase-final fall
            ornament[first:last] -= np.linspace(0.0, 1.5, last - first)
        t += rng.uniform(0.3, 1.2) * song.beat * 2

    # Pitch track: hold notes across gaps, then glide between them at the language's speed.
    sung = np.flatnonzero(~np.isnan(pitch))
    if sung.size == 0:
        pitch = np.full(frames, base)
    else:
        pitch[: sung[0]] = pitch[sung[0]]
        held = np.maximum.accumulate(np.where(np.isnan(pitch), 0, np.arange(frames)))
        pitch = pitch[held]
    glide = max(1, fr(style.glide_seconds))
    kernel = np.hanning(2 * glide + 1)
    padded = np.pad(pitch, glide, mode="edge")
    pitch = np.convolve(padded, kernel / kernel.sum(), mode="valid")
    rate, depth = style.vibrato
    tt = np.arange(frames) / frame_rate
    vib = depth * np.sin(2 * np.pi * rate * tt) * np.clip((age - 0.15) / 0.25, 0, 1)
    drift = np.convolve(rng.normal(0, 0.08, frames), np.ones(9) / 9, mode="same")
    f0 = _hz(pitch + ornament + vib + drift)
    f0_samples = np.interp(np.arange(n), np.arange(frames) * hop, f0)
    source = _saw(np.cumsum(f0_samples) / sr).astype(np.float32)
    hiss = _noise(rng, n)

    # Apply the time-varying vocal tract as a per-frame spectral envelope (STFT domain).
    active = np.flatnonzero((voiced > 0) | (noise > 0) | (breath > 0))
    if active.size == 0:
        return np.zeros(n, dtype=np.float32)
    # sqrt-Hann analysis and synthesis windows at 50% overlap sum to exactly one.
    window = np.sqrt(signal.get_window("hann", win)).astype(np.float32)
    pad = np.zeros(frames * hop + win, dtype=np.float32)

    def spectra(x: np.ndarray) -> np.ndarray:
        pad[:] = 0.0
        pad[win // 2: win // 2 + n] = x
        framed = np.lib.stride_tricks.sliding_window_view(pad, win)[::hop][active]
        return sp_fft.rfft(framed * window, axis=1)

    freqs = sp_fft.rfftfreq(win, 1.0 / sr).astype(np.float32)[None, :]
    fm = formants[:, active].astype(np.float32)
    bandwidths = (80.0, 110.0, 160.0)
    gains = (1.0, 0.55, 0.3)
    env = np.zeros((active.size, freqs.size), dtype=np.float32)
    nas = nasal[active].astype(np.float32)[:, None]
    for k in range(3):
        g = gains[k] * (1 - 0.3 * nas) if k == 0 else gains[k]
        env += g / (1 + ((freqs - fm[k][:, None]) / (0.5 * bandwidths[k])) ** 2)
    env += nas * 0.6 / (1 + ((freqs - 250.0) / 60.0) ** 2)
    env *= 1 - nas * 0.7 / (1 + ((freqs - 1000.0) / 120.0) ** 2)  # nasal anti-resonance
    ring_hz, ring_gain = style.ring
    env += ring_gain / (1 + ((freqs - ring_hz * formant_scale) / 250.0) ** 2)
    env += 0.01
    env *= (np.maximum(freqs, 1000.0) / 1000.0) ** np.float32(style.tilt / 6.02)
    fc = noise_fc[active, None].astype(np.float32)
    bw = noise_bw[active, None].astype(np.float32)
    bands = np.exp(-0.5 * ((freqs - fc) / bw) ** 2)
    spec = spectra(source) * (env * voiced[active, None].astype(np.float32))
    spec += spectra(hiss) * (bands * noise[active, None] * 0.35
                             + env * breath[active, None] * 0.5).astype(np.float32)
    frames_out = np.zeros((frames, win), dtype=np.float32)
    frames_out[active] = sp_fft.irfft(spec, n=win, axis=1) * window
    halves = frames_out.reshape(frames, 2, hop)
    ola = np.zeros((frames + 1, hop), dtype=np.float32)
    ola[:frames] += halves[:, 0]
    ola[1:] += halves[:, 1]
    return ola.reshape(-1)[win // 2: win // 2 + n]


# --------------------------------------------------------------------------------------------
# Song assembly
# --------------------------------------------------------------------------------------------


def _reverb(x: np.ndarray, sr: int, rng: np.random.Generator, decay: float) -> np.ndarray:
    t = np.arange(int(sr * decay * 3)) / sr
    ir = rng.standard_normal(t.size) * np.exp(-t / decay)
    ir = _filter(ir, "lowpass", rng.uniform(3000, 7000), sr)
    ir /= np.sqrt(np.sum(ir * ir))
    return signal.oaconvolve(x.astype(np.float32), ir.astype(np.float32))[: x.size]


def _tile_loop(stem: np.ndarray, loop_len: int, n: int) -> np.ndarray:
    """Repeat a rendered loop to n samples; what rang past the loop end wraps onto its start."""
    loop = stem[:loop_len].astype(np.float32)
    tail = stem[loop_len:]
    loop[: tail.size] += tail
    return np.resize(loop, n)


def _render(language: str, genre: str, seconds: float, out_sr: int, channels: int,
            rng: np.random.Generator) -> np.ndarray:
    """One song as float32 [samples] (mono) or [samples, channels] at out_sr, peak 0.9."""
    sr = min(out_sr, _SYNTH_RATE)
    n = round(seconds * sr)
    minor = rng.random() < _GENRE_MINOR[genre]
    song = _Song(
        n=n, n_bars=0, sr=sr, bpm=rng.uniform(*_GENRE_TEMPO[genre]), key=int(rng.integers(12)),
        scale=_MINOR if minor else _MAJOR,
        progression=_PROGRESSIONS[rng.integers(len(_PROGRESSIONS))],
        bars_per_chord=2 if genre == "hiphop" else int(rng.integers(1, 3)),
        intro_bars=int(rng.integers(1, 3)),
    )
    bar_len = song.bar * sr
    song = replace(song, n_bars=int(np.ceil(n / bar_len)))
    # The backing is rendered once per chord-progression cycle and repeated, as produced
    # music is; the vocal line on top never repeats. This halves the generation time.
    loop_len = round(song.loop_bars * bar_len)
    loop_song = replace(song, n=loop_len + round(1.5 * sr), n_bars=song.loop_bars, intro_bars=0)
    stems = _GENRE_RENDER[genre](loop_song, rng)

    # Arrangement: rhythm section enters after the intro and drops out for a breakdown.
    bar_of_sample = (np.arange(n, dtype=np.float32) / np.float32(bar_len)).astype(np.int32)
    rhythm = np.ones(song.n_bars + 1, dtype=np.float32)
    rhythm[: song.intro_bars] = 0.0
    if song.n_bars > song.intro_bars + 10 and rng.random() < 0.5:
        b = int(rng.integers(song.intro_bars + 4, song.n_bars - 4))
        rhythm[b: b + int(rng.integers(1, 3))] = 0.0
    rhythm_gate = rhythm[bar_of_sample]

    # Levels vary per song so that no single loudness ratio identifies a class.
    mix = []
    for stem, pan, level, role in stems:
        x = _tile_loop(_rms_normalise(stem), loop_len, n)
        if role != "harmony":
            x *= rhythm_gate
        mix.append((x, pan, level + rng.normal(0, 4.0)))
    # The vocal sits on top, about level with the whole backing as in pop production: quieter,
    # and the language would be inaudible under the rhythm section.
    vocal = _rms_normalise(_vocal(song, language, rng)).astype(np.float32)
    mix.append((vocal, rng.uniform(-0.1, 0.1), rng.uniform(5.0, 10.0)))

    out = np.zeros((channels, n), dtype=np.float32)
    for x, pan, level in mix:
        g = 10 ** (level / 20)
        if channels == 1:
            out[0] += np.float32(g) * x
        else:  # constant-power pan
            theta = (pan + 1) * np.pi / 4
            out[0] += np.float32(g * np.cos(theta)) * x
            out[1] += np.float32(g * np.sin(theta)) * x

    # Per-song "production": tilt EQ, room, noise floor. No steep band limits: in absolute
    # log-mel an empty top octave swamps every other cue, turning the task into "which
    # songs were low-passed".
    tilt_hz = rng.uniform(300, 3000)
    low_gain, high_gain = 10 ** (rng.uniform(-3, 3, 2) / 20)
    decay = rng.uniform(0.05, 0.5)
    wet = rng.uniform(0.05, 0.35)
    floor_db = rng.uniform(-60, -35)
    hiss_hz = rng.uniform(2000, 8000)
    for c in range(channels):
        high = _filter(out[c], "highpass", tilt_hz, sr, 1)
        out[c] = low_gain * (out[c] - high) + high_gain * high
    # One room for all channels (convolution is the costliest step); the right channel hears
    # it 11 ms later, which is enough to decorrelate the two.
    room = _reverb(out.mean(axis=0), sr, rng, decay)
    for c in range(channels):
        shift = c * round(0.011 * sr)
        late = room if shift == 0 else np.concatenate([np.zeros(shift, np.float32), room[:-shift]])
        x = (1 - wet) * out[c] + wet * late
        rms = np.sqrt(np.mean(x * x))
        hiss = _filter(_noise(rng, n), "lowpass", hiss_hz, sr, 1)
        out[c] = x + _rms_normalise(hiss) * rms * 10 ** (floor_db / 20)

    ramp = np.arange(n, dtype=np.float32)
    fade = np.minimum(ramp / np.float32(sr * rng.uniform(0.01, 0.5)), 1.0)
    fade *= np.minimum((n - ramp) / np.float32(sr * rng.uniform(1.0, 3.0)), 1.0)
    out *= fade
    if sr != out_sr:
        g = math.gcd(sr, out_sr)
        out = signal.resample_poly(out, out_sr // g, sr // g, axis=1)
    peak = float(np.max(np.abs(out)))
    out = (out * (_PEAK / peak if peak > 0 else 1.0)).astype(np.float32)
    return out[0] if channels == 1 else np.ascontiguousarray(out.T)


# --------------------------------------------------------------------------------------------
# Lyrics
# --------------------------------------------------------------------------------------------

_WORDS = {
    "arabic": (
        "حب", "قلب", "ليل", "نور", "سماء", "بحر", "عين", "روح", "حلم", "شمس", "قمر", "طريق",
        "وطن", "صوت", "نار", "ورد", "زمان", "دنيا", "عمر", "يا", "حبيبي", "أنا", "أنت", "معك",
        "بعيد", "غريب", "سلام", "فرح", "دموع", "سهر", "نجوم", "شوق",
    ),
    "english": (
        "love", "heart", "night", "dream", "fire", "light", "road", "city", "baby", "tonight",
        "forever", "dance", "rain", "sky", "home", "money", "street", "shadow", "alive", "run",
        "gold", "wild", "ocean", "falling", "morning", "hold", "stars", "echo", "summer", "free",
    ),
    "hindi": (
        "प्यार", "दिल", "रात", "सपना", "आसमान", "चाँद", "सूरज", "दुनिया", "ज़िंदगी", "साथ",
        "मेरा", "तेरा", "हम", "तुम", "गीत", "धड़कन", "बारिश", "हवा", "रंग", "खुशी", "आँखें",
        "राह", "नदी", "सफ़र", "यादें", "मन", "जान", "सितारे", "प्रेम", "सवेरा",
    ),
    "spanish": (
        "corazón", "amor", "noche", "vida", "fuego", "cielo", "luna", "sol", "camino", "calle",
        "bailar", "sueño", "siempre", "mar", "ciudad", "quiero", "contigo", "alma", "lluvia",
        "estrella", "libre", "tiempo", "mañana", "besos", "loco", "canción", "fuerte", "mirada",
        "sangre", "ritmo",
    ),
}


def _lyrics(language: str, rng: np.random.Generator) -> str:
    words = _WORDS[language]
    lines = []
    for _ in range(int(rng.integers(4, 9))):
        line = " ".join(words[i] for i in rng.integers(len(words), size=int(rng.integers(3, 8))))
        lines.append(line[:1].upper() + line[1:])  # no-op for scripts without case
    chorus = lines[: 2]
    return "\n".join(lines + chorus) + "\n"


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------


def _write_corpus(folder: Path, songs_per_cell: int, seed: int, min_seconds: float,
                  max_seconds: float, sample_rate: int | None) -> None:
    (folder / "audio").mkdir(parents=True)
    (folder / "lyrics").mkdir()
    cells = [(li, gi, k) for li in range(len(LANGUAGES)) for gi in range(len(GENRES))
             for k in range(songs_per_cell)]

    def write_song(cell: tuple[int, int, int]) -> tuple[str, str, str, str, str]:
        li, gi, k = cell
        language, genre = LANGUAGES[li], GENRES[gi]
        # Seeded by (seed, cell, index) so a song never depends on how many precede it.
        audio_seq, lyrics_seq = np.random.SeedSequence(seed, spawn_key=cell).spawn(2)
        rng = np.random.default_rng(audio_seq)
        # Rotating by cell too spreads every format over every genre and language.
        ext, sr, channels, fmt, subtype = _FORMATS[(li + gi + k) % len(_FORMATS)]
        sr = sample_rate or sr
        song_id = f"{language}_{genre}_{k:02d}"
        audio = _render(language, genre, rng.uniform(min_seconds, max_seconds), sr, channels, rng)
        audio_rel = f"audio/{song_id}.{ext}"
        with sf.SoundFile(folder / audio_rel, "w", sr, channels, subtype, format=fmt) as fh:
            # libvorbis allocas the whole pending buffer on the stack: one big write of a
            # minute of audio overflows it and segfaults, so feed it in blocks.
            for start in range(0, len(audio), _WRITE_BLOCK):
                fh.write(audio[start: start + _WRITE_BLOCK])
        lyrics_rel = f"lyrics/{song_id}.txt"
        text = _lyrics(language, np.random.default_rng(lyrics_seq))
        (folder / lyrics_rel).write_text(text, encoding="utf-8")
        return song_id, audio_rel, language, genre, lyrics_rel

    # numpy, scipy and libsndfile release the GIL on whole-song arrays, so threads use every
    # core; each song owns its generator, so the output does not depend on scheduling.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with ThreadPoolExecutor(max_workers=min(cpus or 1, 8)) as pool:
        rows = list(pool.map(write_song, cells))
    with open(folder / "metadata.csv", "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("song_id", "path", "language", "genre", "lyrics_path"))
        writer.writerows(rows)


def generate_demo_corpus(root: Path, songs_per_cell: int = 4, seed: int = 0,
                         min_seconds: float = 32.0, max_seconds: float = 42.0,
                         sample_rate: int | None = None) -> Path:
    """Write songs + lyrics + metadata.csv under root; return the path of metadata.csv."""
    root = Path(root)
    metadata = root / "metadata.csv"
    if metadata.exists():
        with open(metadata, encoding="utf-8", newline="") as fh:
            songs = sum(1 for _ in csv.reader(fh)) - 1  # minus the header
        wanted = songs_per_cell * len(LANGUAGES) * len(GENRES)
        if songs != wanted:  # an existing corpus of another size must not stand in silently
            raise ConfigError(f"{root} holds a demo corpus of {songs} songs, not {wanted} "
                             f"(songs_per_cell={songs_per_cell}); set data.demo_dir to another "
                             f"folder for this size, or delete {root}")
        return metadata
    if songs_per_cell < 1:
        raise ValueError(f"songs_per_cell must be at least 1, got {songs_per_cell}")
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds}, {max_seconds}")
    root.parent.mkdir(parents=True, exist_ok=True)
    # A sibling temp folder is on the same filesystem, so the final rename is atomic.
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    staging.chmod(0o755)  # mkdtemp's private 0700 would otherwise become the corpus's mode
    try:
        _write_corpus(staging, songs_per_cell, seed, min_seconds, max_seconds, sample_rate)
        try:
            os.rename(staging, root)  # succeeds when root is absent or an empty folder
        except OSError:
            if metadata.exists():  # another process finished first; keep its corpus
                return metadata
            # root holds other things: move our folders in, metadata.csv last as the
            # "complete" marker, replacing leftovers of an earlier interrupted move.
            for name in ("audio", "lyrics"):
                if (root / name).exists():
                    shutil.rmtree(root / name)
                os.rename(staging / name, root / name)
            os.replace(staging / "metadata.csv", metadata)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return metadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path, help="folder to hold metadata.csv, audio/, lyrics/")
    parser.add_argument("--songs-per-cell", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(generate_demo_corpus(args.out_dir, songs_per_cell=args.songs_per_cell, seed=args.seed))


if __name__ == "__main__":
    main()
