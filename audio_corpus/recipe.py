"""The bundled corpus: what it holds, and building and checking it from espeak-ng.

:func:`corpus_specs` is the recipe — the four example commands in every voice at a slow and a
normal rate (and the US voice fast), other phrasings of the same commands, out-of-grammar
phrases that must come back UNKNOWN, and noisy copies of the four commands at 20, 10 and 5 dB
SNR. :func:`build` writes its WAVs, ``manifest.csv`` and ``build-info.json``; :func:`check`
compares the committed files with the manifest without rebuilding; :func:`verify` rebuilds into
a temporary folder and compares bytes. ``python -m audio_corpus.build`` is the command line.

Each clean utterance is spoken by espeak-ng as :mod:`audio_corpus.synthesis` describes
(resampled to 16 kHz, trimmed, peak-normalised to -3 dBFS, framed with 300 ms of leading and
200 ms of trailing digital silence, so that the end of speech is a definite point in time).
Noisy copies add white or pink noise from a numpy RNG seeded by the utterance id, at a given
SNR over the speech part. WAVs are written with the standard library's ``wave`` module (a
plain 44-byte header, no timestamps), so building twice gives byte-identical files. The same
bytes on another machine need the same espeak-ng version (recorded in ``build-info.json``).
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from voiceharness.errors import CorpusError
from voiceharness.guide import SAMPLE_RATE_HZ

from .manifest import load_corpus, write_manifest
from .model import CorpusWarning
from .specs import BUILD_INFO, DEFAULT_MANIFEST, PACKAGE_DIR, WAV_DIR, Spec, manifest_rows
from .synthesis import (
    LEADING_SILENCE_MS,
    TRAILING_SILENCE_MS,
    espeak_binary,
    espeak_version,
    normalise_peak,
    synthesise,
    to_wav_bytes,
)

VOICES = ("en-us", "en", "en-us+f3", "en+m3")  # US male, British male, US female, British male 3
RATE_NORMAL_WPM = 160
RATE_SLOW_WPM = 130
RATE_FAST_WPM = 200
SNRS_DB = (20, 10, 5)


def _echo_check(text: str) -> str:
    return "contains:" + text.split(" ", 1)[1] if text.startswith("echo ") else ""


def corpus_specs() -> list[Spec]:
    """The whole corpus, in manifest order."""
    specs: list[Spec] = []
    # The guide's four practical examples: every voice at a slow and a normal rate, and the
    # US voice fast too (the "fast commands" of the performance scenario).
    guide_commands = [
        ("hello jarvis", "GREETING"),
        ("echo hello world", "ECHO"),
        ("what time is it", "TIME_NOW"),
        ("how is the weather", "WEATHER_SIMPLE"),
    ]
    for text, intent in guide_commands:
        for voice in VOICES:
            for rate in (RATE_NORMAL_WPM, RATE_SLOW_WPM):
                specs.append(Spec(text, intent, voice, rate, reply_check=_echo_check(text)))
        specs.append(Spec(text, intent, "en-us", RATE_FAST_WPM, reply_check=_echo_check(text)))
    # Other phrasings of the same command language, one voice and rate each, rotating.
    variants = [
        ("hi jarvis", "GREETING"),
        ("good morning jarvis", "GREETING"),
        ("hello", "GREETING"),
        ("hey jarvis", "GREETING"),
        ("echo good morning", "ECHO"),
        ("echo open the door", "ECHO"),
        ("echo testing one two three", "ECHO"),
        ("what is the time", "TIME_NOW"),
        ("tell me the time", "TIME_NOW"),
        ("jarvis what time is it", "TIME_NOW"),
        ("what's the weather like", "WEATHER_SIMPLE"),
        ("what is the weather today", "WEATHER_SIMPLE"),
        ("jarvis how is the weather", "WEATHER_SIMPLE"),
    ]
    rates = (RATE_NORMAL_WPM, RATE_SLOW_WPM, RATE_FAST_WPM)
    for index, (text, intent) in enumerate(variants):
        voice, rate = VOICES[index % len(VOICES)], rates[index % len(rates)]
        specs.append(Spec(text, intent, voice, rate, reply_check=_echo_check(text)))
    # Out of grammar: the gateway must answer UNKNOWN.
    unknown = ["play some music", "turn off the lights", "order a pizza", "set an alarm for seven"]
    for index, text in enumerate(unknown):
        voice = VOICES[index % len(VOICES)]
        specs.append(Spec(text, "UNKNOWN", voice, RATE_NORMAL_WPM, kind="unknown"))
    # Noisy copies of the guide's commands (US voice, normal rate); the noise colour
    # alternates so that both colours occur at every SNR.
    for command_index, (text, intent) in enumerate(guide_commands):
        for snr_index, snr_db in enumerate(SNRS_DB):
            noise = ("white", "pink")[(command_index + snr_index) % 2]
            specs.append(
                Spec(text, intent, "en-us", RATE_NORMAL_WPM, "noisy", _echo_check(text), snr_db, noise)
            )
    return specs


# --------------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------------


def noise(kind: str, length: int, seed: int) -> np.ndarray:
    """Unit-RMS white or pink (1/f power) noise of ``length`` samples from a seeded RNG."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(length)
    if kind == "white":
        shaped = white
    elif kind == "pink":
        spectrum = np.fft.rfft(white)
        frequencies = np.arange(spectrum.size, dtype=np.float64)
        frequencies[0] = 1.0  # keep the DC bin finite; its amplitude is removed below
        shaped = np.fft.irfft(spectrum / np.sqrt(frequencies), n=length)
        shaped -= shaped.mean()
    else:
        raise ValueError(f"unknown noise {kind!r}; use white or pink")
    return shaped / np.sqrt(np.mean(shaped**2))


def add_noise(clean: np.ndarray, spec: Spec) -> np.ndarray:
    """``clean`` plus noise at ``spec.snr_db`` over its speech part, peak-normalised again."""
    assert spec.snr_db is not None
    lead = SAMPLE_RATE_HZ * LEADING_SILENCE_MS // 1000
    trail = SAMPLE_RATE_HZ * TRAILING_SILENCE_MS // 1000
    speech = clean[lead : clean.size - trail]  # the power of speech, not of the framing silence
    speech_power = float(np.mean(speech**2))
    noise_power = speech_power / 10 ** (spec.snr_db / 10)
    # crc32 of the id: a seed that is stable across runs and Python versions (hash() is not).
    seed = zlib.crc32(spec.id.encode("utf-8"))
    mixed = clean + noise(spec.noise, clean.size, seed) * math.sqrt(noise_power)
    return normalise_peak(mixed)  # scales speech and noise alike: the SNR is kept


# --------------------------------------------------------------------------------------------
# Building and checking
# --------------------------------------------------------------------------------------------


def build(
    out_dir: Path = PACKAGE_DIR, only: Iterable[str] | None = None, *, quiet: bool = False
) -> list[Spec]:
    """Write the WAVs and a manifest of ``only`` (ids; all when None) into ``out_dir``."""
    espeak_binary()  # fail before anything is written
    specs = corpus_specs()
    if only is not None:
        wanted = set(only)
        unknown = sorted(wanted - {s.id for s in specs})
        if unknown:
            raise CorpusError(
                f"no utterance {', '.join(unknown)} in the corpus; ids: {', '.join(s.id for s in specs)}"
            )
        specs = [s for s in specs if s.id in wanted]
        if out_dir.resolve() == PACKAGE_DIR:
            raise CorpusError("--only would leave the bundled manifest incomplete; pass --out DIR too")
    wav_dir = out_dir / WAV_DIR
    wav_dir.mkdir(parents=True, exist_ok=True)
    clean_cache: dict[str, np.ndarray] = {}
    for spec in specs:
        source = spec.source
        if source.id not in clean_cache:
            clean_cache[source.id] = synthesise(source.text, source.voice, source.words_per_minute)
        signal = clean_cache[source.id] if spec.kind != "noisy" else add_noise(clean_cache[source.id], spec)
        (out_dir / spec.path).write_bytes(to_wav_bytes(signal))
        if not quiet:
            print(f"  {spec.path}")
    if only is None:
        keep = {Path(s.path).name for s in specs}
        for stale in wav_dir.glob("*.wav"):
            if stale.name not in keep:
                stale.unlink()
                if not quiet:
                    print(f"  removed stale {stale.name}")
    write_manifest(out_dir / DEFAULT_MANIFEST.name, manifest_rows(specs))
    info = {"espeak_ng": espeak_version(), "numpy": np.__version__, "utterances": len(specs)}
    (out_dir / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return specs


def check(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Problems with the committed corpus, without rebuilding ([] when all is well).

    The manifest loads (every file exists, is audio, is complete), no file needed converting
    (16 kHz mono PCM16 already), the manifest lists exactly the utterances this build makes,
    and no WAV lies in wav/ unlisted.
    """
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorpusWarning)
        try:
            corpus = load_corpus(package_dir / DEFAULT_MANIFEST.name)
        except CorpusError as error:
            return [str(error)]
    problems += [str(w.message) for w in caught if issubclass(w.category, CorpusWarning)]
    expected = [s.id for s in corpus_specs()]
    actual = [u.id for u in corpus]
    if actual != expected:
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        problems.append(
            f"manifest differs from the build's list (missing {missing or 'none'}, extra {extra or 'none'}, "
            f"or another order); run `python -m audio_corpus.build`"
        )
    listed = {u.path.resolve() for u in corpus}
    for wav in sorted((package_dir / WAV_DIR).glob("*.wav")):
        if wav.resolve() not in listed:
            problems.append(f"{wav} is not in the manifest; delete it or rebuild")
    return problems


def verify(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Rebuild into a temporary folder; the names of committed files whose bytes differ."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="audio_corpus_verify_") as folder:
        specs = build(Path(folder), quiet=True)
        for spec in specs:
            committed = package_dir / spec.path
            if not committed.is_file() or committed.read_bytes() != (Path(folder) / spec.path).read_bytes():
                problems.append(f"{committed} differs from a fresh build")
        if (package_dir / "manifest.csv").read_bytes() != (Path(folder) / "manifest.csv").read_bytes():
            problems.append(f"{package_dir / 'manifest.csv'} differs from a fresh build")
    if problems:
        info_path = package_dir / BUILD_INFO
        built_with = json.loads(info_path.read_text())["espeak_ng"] if info_path.is_file() else "unknown"
        problems.append(f"committed files were built with {built_with}; this machine has {espeak_version()}")
    return problems
