"""Build a labelled corpus from real recordings shipped in Debian packages, with synthetic vocals.

    python -m corpora.recorded_music OUT_DIR [--cache-dir DIR] [--seed 0]
    python -m corpora.recorded_music OUT_DIR --check      # trivial-feature NMI of a built corpus

Three genres of recorded music (orchestral, electronic, metal: 8 recordings each from two or three
packages and several composers), two excerpts of 34-42 s from every recording, each excerpt voiced
by espeak-ng in one of four languages (english, spanish, hindi, arabic) and mixed in at 0-6 dB over
the music: 48 songs, 4 per language x genre cell. Every output is re-encoded the same way (Ogg
Vorbis, 44.1 kHz, stereo, loudness-normalised), so codec, rate and level carry no label; every
cell gets the same spread of excerpt lengths (one from each quarter of 34-42 s). Both excerpts of a
recording get different languages and the same split (the `split` column), so no recording is heard
in two splits.

Needs apt-get and dpkg-deb (a Debian/Ubuntu system): packages are fetched with `apt-get download`
into the cache folder and unpacked there; nothing is installed. Re-running skips finished songs;
every file is written atomically. Not run by CI.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OUTPUT_RATE = 44_100
EXCERPT_SECONDS = (34.0, 42.0)   # >= 32 s so a 30 s window always fits; same range for every cell
VOCAL_SNR_DB = (0.0, 6.0)        # vocal RMS over music RMS: the voice sits on top, as sung vocals do
TARGET_RMS_DBFS = -20.0          # every mix leaves at the same loudness: level gives nothing away
PEAK_LIMIT = 0.98
LIMITER_KNEE = 0.7               # soft limiter: samples above this are bent toward PEAK_LIMIT
FADE_SECONDS = 0.3
VORBIS_COMPRESSION = 0.5         # soundfile's 0..1 scale, one setting for every file
ESPEAK_PACKAGES = ("espeak-ng", "libespeak-ng1", "espeak-ng-data", "libpcaudio0", "libsonic0")
VOICE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "f1", "f2", "f3", "f4")
SPLIT_OF_SLOT = ("train", "train", "train", "train", "val", "val", "test", "test")


class CorpusError(RuntimeError):
    """A missing tool or package; the message names it and the fix."""


# --- what goes in ------------------------------------------------------------------------------

# Licence of the music as stated in /usr/share/doc/<package>/copyright (copied next to the corpus).
PACKAGES = {
    "wesnoth-1.16-music": "GPL-2+ (Battle for Wesnoth music; Vorbis GENRE tag 'Romantic Classical')",
    "freeciv-data": "GPL-2+ (Files: *, The Freeciv project)",
    "singularity-music": "CC-BY-SA-3.0 (Max McCracken / maxstack)",
    "starfighter-data": "GPL-2+ (Files: *, Parallel Realities; music credited in credits.txt)",
    "noiz2sa-data": "BSD-2-Clause (Kenta Cho)",
    "fretsonfire-songs-muldjord": "CC-BY-SA-3.0 (El Senator / Muldjord; Vorbis GENRE tag 'Death Metal')",
    "fretsonfire-songs-sectoid": "Expat (Carlos Viola Iborra / Sectoid)",
}


@dataclass(frozen=True)
class Recording:
    """One recording: its stems (paths inside the package, summed: Frets on Fire ships the
    rhythm/backing track and the lead guitar apart) and its genre."""

    key: str
    package: str
    stems: tuple[str, ...]
    genre: str
    artist: str
    title: str


def _wesnoth(name: str, artist: str, title: str) -> Recording:
    path = f"usr/share/games/wesnoth/1.16/data/core/music/{name}.ogg"
    return Recording(f"wesnoth_{name}", "wesnoth-1.16-music", (path,), "orchestral", artist, title)


def _fof(pack: str, folder: str, artist: str, title: str) -> Recording:
    base = f"usr/share/games/fretsonfire/data/songs/{pack}/{folder}"
    return Recording(f"fof_{pack}_{folder.lower().replace(' ', '_')}", f"fretsonfire-songs-{pack}",
                     (f"{base}/song.ogg", f"{base}/guitar.ogg"), "metal", artist, title)


RECORDINGS: tuple[Recording, ...] = (
    # orchestral: seven Wesnoth composers + the Freeciv fanfare
    _wesnoth("battle", "Aleksi Aubry-Carlson", "Battle Music"),
    _wesnoth("breaking_the_chains", "Mattias Westlund", "Breaking the Chains"),
    _wesnoth("casualties_of_war", "Tyler Johnson", "Casualties of War"),
    _wesnoth("elvish-theme", "Doug Kaufman", "Elvish Theme"),
    _wesnoth("frantic", "Stephen Rozanc", "Frantic"),
    _wesnoth("knolls", "Timothy Pinkham", "The Knolls of Doldesh"),
    _wesnoth("nunc_dimittis", "Jeremy Nicoll", "Nunc Dimittis"),
    Recording("freeciv_dawning_fanfare", "freeciv-data",
              ("usr/share/games/freeciv/stdmusic/CullamBruce-Lockhart--Dawning_Fanfare.ogg",),
              "orchestral", "Cullam Bruce-Lockhart", "Dawning Fanfare"),
    # electronic: maxstack (Endgame: Singularity), two OpenGameArt artists (Starfighter), Kenta Cho
    *(Recording(f"singularity_{title.lower().replace('-', '_')}", "singularity-music",
                (f"usr/share/games/singularity/music/{title}.ogg",), "electronic", "maxstack", title)
      for title in ("Aberrations", "By-Product", "Nebula")),
    Recording("starfighter_sound_and_silence", "starfighter-data",
              ("usr/share/starfighter/music/sound_and_silence.ogg",), "electronic", "JunglistMilitia",
              "Sound & Silence"),
    Recording("starfighter_railjet", "starfighter-data", ("usr/share/starfighter/music/railjet_short.ogg",),
              "electronic", "Deceased Superior Technician", "RailJet"),
    *(Recording(f"noiz2sa_{stage}", "noiz2sa-data", (f"usr/share/games/noiz2sa/sounds/{stage}.ogg",),
                "electronic", "Kenta Cho", f"noiz2sa {stage}") for stage in ("stg2", "stg3", "stg5")),
    # metal: Muldjord (death metal) and Sectoid, both as released for Frets on Fire
    _fof("muldjord", "armygeddon", "Muldjord", "Armygeddon"),
    _fof("muldjord", "chaos_god", "Muldjord", "Chaos God"),
    _fof("muldjord", "internal_degeneration", "Muldjord", "Internal Degeneration"),
    _fof("muldjord", "mutilated_mime", "Muldjord", "Mutilated Mime"),
    _fof("sectoid", "Escape from chaosland", "Sectoid", "Escape from Chaosland"),
    _fof("sectoid", "Feelings", "Sectoid", "Feelings"),
    _fof("sectoid", "Metal madness", "Sectoid", "Metal Madness"),
    _fof("sectoid", "War of freedom", "Sectoid", "War of Freedom"),
)


@dataclass(frozen=True)
class Language:
    """A label, its espeak-ng voice, and a small grammar: frames with {n} {m} (two different
    nouns), {a} (adjective) and {t} (time) slots, filled from word lists chosen to need no
    agreement (all nouns of one gender and invariant in the oblique case, invariant adjectives)."""

    name: str
    voice: str
    frames: tuple[str, ...]
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    times: tuple[str, ...]
    capitalise: bool = False


LANGUAGES: tuple[Language, ...] = (
    Language("english", "en", (
        "{n} is {a} {t}", "I can see {n} {t}", "we walk along {n} {t}", "{n} and {m} sing together",
        "I remember {n} {t}", "{n} feels {a} and so does {m}", "take me back to {n}",
        "{t} {n} is calling me", "nobody knows {n} like {m}", "{n} was {a} {t}"),
        ("the sky", "the river", "the road", "the sea", "the wind", "the sun", "the forest",
         "the heart", "the dream", "the train", "the harbour", "the summer"),
        ("quiet", "distant", "bright", "cold", "new", "wide", "dark", "blue", "happy", "silent"),
        ("tonight", "in the morning", "every day", "right now", "in autumn", "at dawn"), True),
    Language("spanish", "es", (
        "{n} está {a} {t}", "veo {n} {t}", "caminamos hacia {n} {t}", "{n} y {m} cantan juntos",
        "recuerdo {n} {t}", "amo {n} porque es {a}", "llévame otra vez a {n}",
        "{t} {n} me llama", "nadie conoce {n} como {m}", "{n} era {a} {t}"),
        ("el cielo", "el río", "el camino", "el mar", "el viento", "el sol", "el bosque",
         "el corazón", "el sueño", "el tren", "el puerto", "el verano"),
        ("tranquilo", "lejano", "brillante", "frío", "nuevo", "grande", "oscuro", "azul", "alegre",
         "callado"),
        ("esta noche", "por la mañana", "cada día", "ahora", "en otoño", "al amanecer"), True),
    Language("hindi", "hi", (
        "{n} आज बहुत {a} है", "मुझे {n} याद आता है", "{t} {n} {a} लगता है",
        "हम {n} की ओर चलते हैं", "{n} और {m} साथ गाते हैं", "{t} मैं {n} को देखता हूँ",
        "{n} मुझे बुलाता है", "मुझे {n} तक ले चलो", "{n} {m} जैसा {a} है", "{t} {n} {a} था"),
        ("आसमान", "दरिया", "शहर", "सफ़र", "दिल", "चाँद", "मौसम", "पहाड़", "जंगल", "बादल", "समंदर",
         "गाँव"),
        ("सुंदर", "शांत", "ख़ामोश", "रोशन", "उदास", "आज़ाद", "लाल", "अजीब"),
        ("रात को", "सुबह", "शाम को", "हर दिन", "आज", "बारिश में")),
    Language("arabic", "ar", (
        "{n} {a} {t}", "أرى {n} {t}", "نمشي نحو {n} {t}", "{n} و{m} يغنيان معا",
        "أتذكر {n} {t}", "أحب {n} لأنه {a}", "خذني إلى {n}", "{t} يناديني {n}",
        "لا أحد يعرف {n} مثل {m}", "{n} {a} جدا"),
        ("الليل", "البحر", "القمر", "الطريق", "الجبل", "القلب", "النهر", "الصباح", "الحلم", "المطر",
         "النجم", "الوادي"),
        ("طويل", "هادئ", "بعيد", "جميل", "كبير", "قريب", "بارد", "واسع", "حزين", "جديد"),
        ("في المساء", "في الصباح", "كل يوم", "الآن", "في الخريف", "عند الفجر")),
)


# --- pure logic (tested in tests/test_recorded_corpus.py) ---------------------------------------

def make_line(language: Language, rng: random.Random) -> str:
    """One sentence in the language from its frames and word lists."""
    frame = rng.choice(language.frames)
    noun, other = rng.sample(language.nouns, 2)
    line = frame.format(n=noun, m=other, a=rng.choice(language.adjectives), t=rng.choice(language.times))
    line = " ".join(line.split())
    return line[0].upper() + line[1:] if language.capitalise else line


def lines_of(language: Language, rng: random.Random) -> Iterator[str]:
    """An endless stream of sentences, none repeated within a song while fresh ones exist."""
    seen: set[str] = set()
    while True:
        for _ in range(50):
            line = make_line(language, rng)
            if line not in seen:
                break
        seen.add(line)
        yield line


def assign_language_pairs(n_recordings: int, languages: Sequence[str],
                          rng: random.Random) -> list[tuple[str, str]]:
    """Two different languages per recording, every language used equally often (2n / L times)."""
    if (2 * n_recordings) % len(languages):
        raise ValueError(f"{n_recordings} recordings x 2 excerpts cannot be split evenly over "
                         f"{len(languages)} languages")
    slots = list(languages) * (2 * n_recordings // len(languages))
    for _ in range(10_000):
        rng.shuffle(slots)
        pairs = list(zip(slots[::2], slots[1::2]))
        if all(a != b for a, b in pairs):
            return pairs
    raise ValueError("no assignment with two different languages per recording")


def assign_recording_splits(pairs: Sequence[tuple[str, str]], rng: random.Random) -> list[str]:
    """A split per recording (SPLIT_OF_SLOT shares), so that val and test each hold every
    language of the pairs (within one genre) and train holds as many as it can."""
    languages = {lang for pair in pairs for lang in pair}
    order = list(range(len(pairs)))
    held = SPLIT_OF_SLOT.count("val")
    if len(pairs) != len(SPLIT_OF_SLOT):
        raise ValueError(f"expected {len(SPLIT_OF_SLOT)} recordings per genre, got {len(pairs)}")
    candidates = list(itertools.combinations(order, held))
    rng.shuffle(candidates)
    covering = [c for c in candidates if {lang for i in c for lang in pairs[i]} >= languages
                or len({lang for i in c for lang in pairs[i]}) == 2 * held]
    for val in covering:
        for test in covering:
            if set(val) & set(test):
                continue
            splits = ["train"] * len(pairs)
            for i in val:
                splits[i] = "val"
            for i in test:
                splits[i] = "test"
            return splits
    raise ValueError("no val/test choice covers the languages; use more recordings per genre")


def excerpt_starts(total_s: float, lengths: tuple[float, float], rng: random.Random) -> tuple[float, float]:
    """Two non-overlapping excerpts of the given lengths: one from each half of the recording,
    clear of the edges (fade-in, fade-out) where the recording is long enough."""
    first_len, second_len = lengths
    if total_s < first_len + second_len + 1.0:
        raise ValueError(f"recording of {total_s:.1f} s too short for excerpts of {first_len:.1f} "
                         f"and {second_len:.1f} s")
    margin = min(5.0, (total_s - first_len - second_len) / 4)
    half = total_s / 2
    first = rng.uniform(margin, max(margin, min(half, total_s - second_len - margin) - first_len))
    second = rng.uniform(max(half, first + first_len), total_s - second_len - margin)
    return round(first, 3), round(second, 3)


def stratified_lengths(count: int, rng: random.Random) -> list[float]:
    """count excerpt lengths, one from each of count equal strata of EXCERPT_SECONDS, shuffled:
    every (genre, language) cell gets the same spread of lengths, so length tells no label."""
    low, high = EXCERPT_SECONDS
    width = (high - low) / count
    lengths = [round(low + (k + rng.random()) * width, 3) for k in range(count)]
    rng.shuffle(lengths)
    return lengths


@dataclass(frozen=True)
class SongPlan:
    song_id: str
    recording: str
    genre: str
    language: str
    split: str
    excerpt: int
    start_s: float
    duration_s: float
    voice: str
    speed: int
    pitch: int
    snr_db: float
    text_seed: int


def plan_corpus(recordings: Sequence[Recording], durations: dict[str, float],
                languages: Sequence[Language], seed: int) -> list[SongPlan]:
    """Every song's labels and settings, drawn from seed alone (no audio needed). Song ids are
    neutral (song_000...) and shuffled, so neither name nor order tells a label."""
    rng = random.Random(seed)
    names = [lang.name for lang in languages]
    voices = {lang.name: lang.voice for lang in languages}
    slots = []  # (recording, split, language) per excerpt
    for genre in sorted({r.genre for r in recordings}):
        members = sorted((r for r in recordings if r.genre == genre), key=lambda r: r.key)
        pairs = assign_language_pairs(len(members), names, rng)
        splits = assign_recording_splits(pairs, rng)
        slots += [(r, split, lang) for r, pair, split in zip(members, pairs, splits) for lang in pair]
    cells: dict[tuple[str, str], list[int]] = {}
    for i, (recording, _, language) in enumerate(slots):
        cells.setdefault((recording.genre, language), []).append(i)
    lengths = [0.0] * len(slots)
    for members in cells.values():
        for i, length in zip(members, stratified_lengths(len(members), rng)):
            lengths[i] = length
    rows = []
    for i in range(0, len(slots), 2):
        recording, split = slots[i][0], slots[i][1]
        starts = excerpt_starts(durations[recording.key], (lengths[i], lengths[i + 1]), rng)
        for excerpt in (0, 1):
            language = slots[i + excerpt][2]
            rows.append(dict(recording=recording.key, genre=recording.genre, language=language, split=split,
                             excerpt=excerpt, start_s=starts[excerpt], duration_s=lengths[i + excerpt],
                             voice=f"{voices[language]}+{rng.choice(VOICE_VARIANTS)}",
                             speed=rng.randint(130, 165), pitch=rng.randint(35, 70),
                             snr_db=round(rng.uniform(*VOCAL_SNR_DB), 2),
                             text_seed=rng.randrange(2**31)))
    rng.shuffle(rows)
    return [SongPlan(song_id=f"song_{i:03d}", **row) for i, row in enumerate(rows)]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def soft_limit(x: np.ndarray, knee: float = LIMITER_KNEE) -> np.ndarray:
    """Samples above knee bent smoothly (tanh) toward PEAK_LIMIT; below it untouched."""
    room = PEAK_LIMIT - knee
    over = np.abs(x) > knee
    bent = np.sign(x) * (knee + room * np.tanh((np.abs(x) - knee) / room))
    return np.where(over, bent, x)


def mix_at_level(music: np.ndarray, vocal: np.ndarray, snr_db: float) -> np.ndarray:
    """music [n, channels] + vocal [n] (centred) scaled so that rms(vocal) / rms(music) is snr_db;
    the mix is set to TARGET_RMS_DBFS, its rare peaks soft-limited below PEAK_LIMIT (a plain
    scale-down would lower the level of peaky songs, and the level would then tell the label)."""
    if music.shape[0] != vocal.shape[0]:
        raise ValueError(f"music has {music.shape[0]} samples, vocal {vocal.shape[0]}")
    gain = rms(music) / max(rms(vocal), 1e-9) * 10 ** (snr_db / 20)
    mix = music + gain * vocal[:, None]
    for _ in range(3):  # limiting lowers the level a little; set it again
        mix = soft_limit(mix * (10 ** (TARGET_RMS_DBFS / 20) / max(rms(mix), 1e-9)))
    return mix.astype(np.float32)


def vocal_track(lines: Iterator[str], synth: Callable[[str, int], np.ndarray], samples: int,
                rate: int, rng: random.Random) -> tuple[np.ndarray, list[str]]:
    """Lines spoken one after another (a pitch per line gives a sung contour) until the excerpt
    is full: [samples] mono, and the lines used (the lyrics). synth(text, pitch_offset) -> mono."""
    track = np.zeros(samples, dtype=np.float32)
    used: list[str] = []
    pos = int(rng.uniform(0.5, 2.0) * rate)
    while pos < samples - rate:  # a line that starts in the last second would be cut at once
        line = next(lines)
        voice = synth(line, rng.choice((-8, -4, 0, 4, 8)))
        end = min(samples, pos + len(voice))
        track[pos:end] = voice[: end - pos]
        used.append(line)
        pos = end + int(rng.uniform(0.3, 1.0) * rate)
    return track, used


def provenance_row(plan: SongPlan, recording: Recording, version: str, source: dict[str, object],
                   text: str) -> dict[str, object]:
    """One PROVENANCE.csv row: where the music came from, under which licence, what was sung."""
    return {
        "song_id": plan.song_id, "path": f"audio/{plan.song_id}.ogg", "language": plan.language,
        "genre": plan.genre, "split": plan.split, "package": recording.package, "package_version": version,
        "source_files": ";".join("/" + stem for stem in recording.stems), "artist": recording.artist,
        "title": recording.title, "licence": PACKAGES[recording.package],
        "licence_file": f"licenses/{recording.package}.copyright",
        "source_codec": source["codec"], "source_sample_rate": source["sample_rate"],
        "source_channels": source["channels"], "excerpt_start_s": plan.start_s,
        "duration_s": plan.duration_s, "voice": f"espeak-ng -v {plan.voice} -s {plan.speed} -p {plan.pitch}",
        "vocal_snr_db": plan.snr_db, "text": text.replace("\n", " / "),
    }


# --- tools: apt-get, dpkg-deb, espeak-ng --------------------------------------------------------

def _run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, **kwargs)


def _need(tool: str, fix: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise CorpusError(f"{tool} not found: {fix}")
    return path


def fetch_deb(package: str, cache: Path) -> Path:
    """The package's .deb in cache/debs, downloaded with `apt-get download` when absent."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    apt = _need("apt-get", "this script fetches Debian packages; run it on Debian/Ubuntu, or download "
                f"{package}_*.deb by hand into {debs}")
    with tempfile.TemporaryDirectory(dir=debs) as tmp:  # a cut download never looks finished
        done = _run([apt, "download", package], cwd=tmp)
        got = sorted(Path(tmp).glob(f"{package}_*.deb"))
        if done.returncode or not got:
            reason = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no .deb written"]
            raise CorpusError(
                f"apt-get download {package} failed ({reason[0]}). Fix: `sudo apt-get update` (the package "
                f"is in Debian 12 'bookworm' main; on Ubuntu enable 'universe'), or put {package}_*.deb "
                f"into {debs}")
        os.replace(got[0], debs / got[0].name)
    return debs / got[0].name


def deb_version(deb: Path) -> str:
    dpkg = _need("dpkg-deb", "install dpkg (it is part of every Debian/Ubuntu system)")
    return _run([dpkg, "-f", str(deb), "Version"], check=True).stdout.strip()


def unpack(deb: Path, cache: Path) -> Path:
    """The .deb unpacked (dpkg-deb -x, nothing installed) into cache/root/<deb stem>."""
    target = cache / "root" / deb.stem
    if target.is_dir():
        return target
    dpkg = _need("dpkg-deb", "install dpkg (it is part of every Debian/Ubuntu system)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
    done = _run([dpkg, "-x", str(deb), str(tmp)])
    if done.returncode:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CorpusError(f"dpkg-deb -x {deb} failed: {done.stderr.strip()}; delete the file and rerun")
    os.replace(tmp, target)
    return target


@dataclass(frozen=True)
class Espeak:
    command: tuple[str, ...]
    env: dict[str, str]
    version: str


def find_espeak(cache: Path) -> Espeak:
    """espeak-ng from PATH, or else from its Debian packages unpacked into the cache (no root)."""
    env = dict(os.environ)
    path = shutil.which("espeak-ng")
    if path is None:
        roots = [unpack(fetch_deb(package, cache), cache) for package in ESPEAK_PACKAGES]
        libs = os.pathsep.join(str(r / "usr/lib/x86_64-linux-gnu") for r in roots)
        data = next((r / "usr/lib/x86_64-linux-gnu" for r in roots
                     if (r / "usr/lib/x86_64-linux-gnu/espeak-ng-data").is_dir()), None)
        binary = roots[0] / "usr/bin/espeak-ng"
        if data is None or not binary.is_file():
            raise CorpusError("espeak-ng unpacked without its binary or data: "
                              "`sudo apt-get install espeak-ng`")
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libs, env.get("LD_LIBRARY_PATH")]))
        env["ESPEAK_DATA_PATH"] = str(data)
        path = str(binary)
    done = _run([path, "--version"], env=env)
    if done.returncode:
        raise CorpusError(f"espeak-ng does not run ({done.stderr.strip()}); `sudo apt-get install espeak-ng`")
    return Espeak((path,), env, done.stdout.strip())


def speak(espeak: Espeak, text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """espeak-ng's wav for text: (mono float32, its sample rate)."""
    import soundfile as sf

    cmd = [*espeak.command, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text]
    done = subprocess.run(cmd, capture_output=True, env=espeak.env)
    if done.returncode or not done.stdout:
        raise CorpusError(f"espeak-ng -v {voice} failed: {done.stderr.decode(errors='replace').strip()}")
    audio, rate = sf.read(io.BytesIO(done.stdout), dtype="float32", always_2d=True)
    return audio.mean(axis=1), rate


# --- audio ---------------------------------------------------------------------------------------

def source_info(paths: Sequence[Path]) -> dict[str, object]:
    import soundfile as sf

    infos = [sf.info(str(p)) for p in paths]
    return {"codec": f"{infos[0].format}/{infos[0].subtype}".lower(), "sample_rate": infos[0].samplerate,
            "channels": infos[0].channels, "seconds": min(i.duration for i in infos)}


def read_excerpt(paths: Sequence[Path], start_s: float, duration_s: float) -> np.ndarray:
    """The stems' sum from start_s, [round(duration_s * OUTPUT_RATE), 2] at OUTPUT_RATE, faded."""
    import librosa
    import soundfile as sf

    total = None
    for path in paths:
        rate = sf.info(str(path)).samplerate
        first = int(round(start_s * rate))
        audio, _ = sf.read(str(path), start=first, frames=int(round(duration_s * rate)) + rate // 10,
                           dtype="float32", always_2d=True)
        audio = audio[:, :2] if audio.shape[1] >= 2 else np.repeat(audio, 2, axis=1)
        if rate != OUTPUT_RATE:
            audio = librosa.resample(audio.T, orig_sr=rate, target_sr=OUTPUT_RATE, res_type="soxr_hq").T
        total = audio if total is None else total[: len(audio)] + audio[: len(total)]
    samples = int(round(duration_s * OUTPUT_RATE))
    if total is None or len(total) < samples:
        raise CorpusError(f"{paths[0]}: fewer samples than planned from {start_s} s; "
                          "delete the cache and rerun")
    total = np.ascontiguousarray(total[:samples], dtype=np.float32)
    fade = int(FADE_SECONDS * OUTPUT_RATE)
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)[:, None]
    total[:fade] *= ramp
    total[-fade:] *= ramp[::-1]
    return total


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_csv(path: Path, rows: Sequence[dict[str, object]]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    _atomic_write(path, write)


def render_song(plan: SongPlan, paths: Sequence[Path], espeak: Espeak, out: Path) -> None:
    """audio/<id>.ogg and lyrics/<id>.txt for one planned song (lyrics first: audio marks done)."""
    import librosa
    import soundfile as sf

    language = next(lang for lang in LANGUAGES if lang.name == plan.language)
    music = read_excerpt(paths, plan.start_s, plan.duration_s)
    rng = random.Random(plan.text_seed)

    def synth(text: str, pitch_offset: int) -> np.ndarray:
        voice, rate = speak(espeak, text, plan.voice, plan.speed, plan.pitch + pitch_offset)
        return librosa.resample(voice, orig_sr=rate, target_sr=OUTPUT_RATE, res_type="soxr_hq")

    vocal, used = vocal_track(lines_of(language, rng), synth, len(music), OUTPUT_RATE, rng)
    mix = mix_at_level(music, vocal, plan.snr_db)
    _atomic_write(out / "lyrics" / f"{plan.song_id}.txt",
                  lambda tmp: tmp.write_text("\n".join(used) + "\n", encoding="utf-8"))
    _atomic_write(out / "audio" / f"{plan.song_id}.ogg",
                  lambda tmp: sf.write(str(tmp), mix, OUTPUT_RATE, format="OGG", subtype="VORBIS",
                                       compression_level=VORBIS_COMPRESSION))


# --- the build -----------------------------------------------------------------------------------

def rebuild_commands(out: Path, cache: Path, seed: int) -> str:
    return (f"python -m corpora.recorded_music {out} --cache-dir {cache} --seed {seed}\n"
            f"python -m corpora.recorded_music {out} --check")


def build(out: Path, cache: Path, seed: int, split_column: bool = True, log=print) -> list[dict[str, object]]:
    out.mkdir(parents=True, exist_ok=True)
    versions, roots = {}, {}
    for package in PACKAGES:
        deb = fetch_deb(package, cache)
        versions[package], roots[package] = deb_version(deb), unpack(deb, cache)
        log(f"package {package} {versions[package]}")
    paths, sources = {}, {}
    for recording in RECORDINGS:
        paths[recording.key] = [roots[recording.package] / stem for stem in recording.stems]
        missing = [str(p) for p in paths[recording.key] if not p.is_file()]
        if missing:
            raise CorpusError(f"{recording.package} {versions[recording.package]} lacks {missing}: the "
                              "package changed; pick another one in RECORDINGS (corpora/recorded_music.py)")
        sources[recording.key] = source_info(paths[recording.key])
    plans = plan_corpus(RECORDINGS, {k: float(s["seconds"]) for k, s in sources.items()}, LANGUAGES, seed)
    espeak = find_espeak(cache)
    by_key = {r.key: r for r in RECORDINGS}
    metadata, provenance = [], []
    for plan in plans:
        audio, lyrics = out / "audio" / f"{plan.song_id}.ogg", out / "lyrics" / f"{plan.song_id}.txt"
        if audio.is_file() and lyrics.is_file():
            log(f"{plan.song_id}: done before, skipped")
        else:
            render_song(plan, paths[plan.recording], espeak, out)
            log(f"{plan.song_id}: {plan.genre} / {plan.language} from {plan.recording} "
                f"@ {plan.start_s:.1f} s")
        row = {"song_id": plan.song_id, "path": f"audio/{plan.song_id}.ogg", "language": plan.language,
               "genre": plan.genre, "lyrics_path": f"lyrics/{plan.song_id}.txt"}
        metadata.append(row | ({"split": plan.split} if split_column else {}))
        recording = by_key[plan.recording]
        provenance.append(provenance_row(plan, recording, versions[recording.package],
                                         sources[plan.recording], lyrics.read_text(encoding="utf-8").strip()))
    for package, root in roots.items():
        copyright_text = (root / "usr/share/doc" / package / "copyright").read_bytes()
        _atomic_write(out / "licenses" / f"{package}.copyright",
                      lambda tmp, b=copyright_text: tmp.write_bytes(b))
    _write_csv(out / "PROVENANCE.csv", provenance)
    _write_csv(out / "metadata.csv", metadata)
    _atomic_write(out / "PROVENANCE.md", lambda tmp: tmp.write_text(
        provenance_markdown(plans, versions, espeak.version, rebuild_commands(out, cache, seed), seed),
        encoding="utf-8"))
    return metadata


def provenance_markdown(plans: Sequence[SongPlan], versions: dict[str, str], espeak_version: str,
                        commands: str, seed: int) -> str:
    cells = Counter((p.genre, p.language) for p in plans)
    genres = sorted({p.genre for p in plans})
    languages = sorted({p.language for p in plans})
    lines = ["# Recorded-music corpus: provenance", "",
             f"{len(plans)} songs, seed {seed}, built by `corpora/recorded_music.py`. Per-song sources, "
             "licences, voices and texts: PROVENANCE.csv. Full copyright files: licenses/.", "",
             "Rebuild (idempotent: finished songs are skipped):", "", "```", commands, "```", "",
             f"Voices: {espeak_version}", "", "| package | version | licence |", "|---|---|---|"]
    lines += [f"| {p} | {versions[p]} | {PACKAGES[p]} |" for p in PACKAGES]
    lines += ["", "| genre | " + " | ".join(languages) + " |", "|---" * (len(languages) + 1) + "|"]
    lines += [f"| {g} | " + " | ".join(str(cells[g, lang]) for lang in languages) + " |" for g in genres]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="output folder (metadata.csv, audio/, lyrics/, PROVENANCE.*)")
    p.add_argument("--cache-dir", type=Path,
                   default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "recorded_music",
                   help="downloaded .debs and their unpacked trees (about 600 MB)")
    p.add_argument("--seed", type=int, default=0, help="labels, excerpts, voices and texts all follow it")
    p.add_argument("--split-column", action=argparse.BooleanOptionalAction, default=True,
                   help="write the split column (both excerpts of a recording in one split); "
                   "--no-split-column lets pipelines split by song (needed for eval.folds > 1)")
    p.add_argument("--check", action="store_true", help="only score trivial features of a built corpus")
    args = p.parse_args(argv)
    if args.check:
        from corpora.trivial_features import main as check
        check([str(args.out / "metadata.csv")])
        return
    try:
        rows = build(args.out, args.cache_dir, args.seed, args.split_column)
    except CorpusError as err:
        sys.exit(f"error: {err}")
    print(f"{len(rows)} songs in {args.out / 'metadata.csv'}")


if __name__ == "__main__":
    main()
