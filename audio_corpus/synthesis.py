"""Speech from text with espeak-ng, made the way every corpus utterance is made.

One recipe for the bundled corpus, ``build --from-text`` and plain text said at run time, so
the same (text, voice, rate) gives the same bytes everywhere on one espeak-ng version::

    espeak_binary() -> str                       # CorpusError naming `apt-get install espeak-ng`
    espeak_version() -> str
    check_voice(voice) -> None                   # CorpusError for a voice or variant espeak-ng lacks
    check_rate(rate_wpm) -> int                  # CorpusError outside MIN_RATE_WPM-MAX_RATE_WPM
    synthesise(text, voice, rate_wpm) -> np.ndarray   # float samples at 16 kHz, silence-framed
    to_wav_bytes(signal) -> bytes                # 16 kHz mono PCM16 WAV, no timestamps

The text is spoken by ``espeak-ng -v VOICE -s WPM --stdin -w FILE`` (on stdin, so a text that
starts with ``-`` is not read as an option), resampled from espeak's 22,050 Hz to 16 kHz with
``scipy.signal.resample_poly``, trimmed of espeak's own edge silence with
:func:`voiceharness.vad.find_speech`, peak-normalised to -3 dBFS and framed with 300 ms of
leading and 200 ms of trailing digital silence, so that the end of speech is a definite point
in time. :data:`SYNTHESIS_RECIPE` names this recipe; it is part of the speech cache's key.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile

from voiceharness.errors import CorpusError
from voiceharness.guide import SAMPLE_RATE_HZ
from voiceharness.vad import find_speech

from .audio_file import pcm16_wav_bytes

LEADING_SILENCE_MS = 300  # a microphone stream starts before the speaker does
TRAILING_SILENCE_MS = 200  # trailing silence lets a VAD gateway detect the end of speech
PEAK_DBFS = -3.0
# espeak-ng clamps a rate below 80 wpm to 80 (the file would not be what the manifest says)
# and above 450 wpm switches to a time-compression that is no longer intelligible speech.
MIN_RATE_WPM = 80
MAX_RATE_WPM = 450
# Change this whenever synthesise() changes what it makes: cached speech made by an older
# recipe is then synthesised again instead of being reused.
SYNTHESIS_RECIPE = "espeak-ng stdin; resample_poly 16 kHz; find_speech trim; peak -3 dBFS; 300+200 ms silence"

_INSTALL_HINT = "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng`"
# Keyed by binary path: a test (or a user) may put another espeak-ng first on PATH.
_versions: dict[str, str] = {}
_known_voices: set[tuple[str, str]] = set()
_variants: dict[str, frozenset[str]] = {}


def espeak_binary() -> str:
    """Path of the espeak-ng binary; CorpusError saying how to install it when missing."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise CorpusError(
            f"espeak-ng not found on PATH: speech is synthesised from text with it; {_INSTALL_HINT}, "
            f"or use recorded WAVs (`python -m audio_corpus.build --from-dir`)"
        )
    return binary


def espeak_version() -> str:
    """espeak-ng's ``--version`` line (version and data folder), e.g. ``eSpeak NG ...: 1.51 ...``."""
    binary = espeak_binary()
    if binary not in _versions:
        result = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
        if result.returncode != 0 or not result.stdout.strip():
            raise CorpusError(f"{binary} --version failed (exit {result.returncode}): {result.stderr.strip()}")
        _versions[binary] = result.stdout.strip()  # as build-info.json records it
    return _versions[binary]


def check_rate(rate_wpm: object) -> int:
    """``rate_wpm`` as an int; CorpusError unless a whole number of words per minute in range."""
    text = str(rate_wpm).strip()
    if isinstance(rate_wpm, bool) or not re.fullmatch(r"\d+", text):
        raise CorpusError(
            f"speaking rate {rate_wpm!r} is not a whole number of words per minute; "
            f"use {MIN_RATE_WPM}-{MAX_RATE_WPM} (espeak-ng's default is 175)"
        )
    rate = int(text)
    if not MIN_RATE_WPM <= rate <= MAX_RATE_WPM:
        raise CorpusError(
            f"speaking rate {rate} wpm is outside espeak-ng's {MIN_RATE_WPM}-{MAX_RATE_WPM} wpm "
            f"(below it espeak-ng silently speaks at {MIN_RATE_WPM}); pick a rate in that range"
        )
    return rate


def check_voice(voice: str) -> None:
    """CorpusError unless espeak-ng has ``voice`` (``LANG`` or ``LANG+VARIANT``, e.g. ``en-us+f3``).

    espeak-ng refuses an unknown voice itself, but speaks an unknown *variant* (``en-us+nosuch``)
    without a word, in a voice nobody asked for; so variants are checked against its list.
    """
    binary = espeak_binary()
    if (binary, voice) in _known_voices:
        return
    if not voice or any(char.isspace() for char in voice) or voice.startswith("-"):
        raise CorpusError(f"espeak-ng voice {voice!r} is not a voice name; list them with `espeak-ng --voices`")
    base, _, variant = voice.partition("+")
    if variant and variant not in _variant_names(binary):
        raise CorpusError(
            f"espeak-ng has no voice variant {variant!r} (in {voice!r}; names are case-sensitive); "
            f"list them with `espeak-ng --voices=variant`"
        )
    result = subprocess.run([binary, "-v", base, "-q", "--stdin"], input="a", capture_output=True,
                            text=True, check=False)  # fmt: skip
    if result.returncode != 0:
        raise CorpusError(
            f"espeak-ng has no voice {base!r} ({result.stderr.strip() or f'exit {result.returncode}'}); "
            f"list them with `espeak-ng --voices`"
        )
    _known_voices.add((binary, voice))


def _variant_names(binary: str) -> frozenset[str]:
    if binary not in _variants:
        result = subprocess.run([binary, "--voices=variant"], capture_output=True, text=True, check=False)
        # Rows look like " 5  variant  --/F  Alicia  !v/Alicia": the variant is the file name.
        _variants[binary] = frozenset(re.findall(r"!v/(\S+)", result.stdout))
    return _variants[binary]


def synthesise(text: str, voice: str, rate_wpm: int) -> np.ndarray:
    """Clean speech of ``text`` as float64 samples in [-1, 1] at 16 kHz, silence-framed.

    CorpusError when espeak-ng is missing, refuses the voice, or makes no sound of the text.
    """
    binary = espeak_binary()
    with tempfile.TemporaryDirectory(prefix="audio_corpus_") as folder:
        raw = Path(folder) / "espeak.wav"
        command = [binary, "-v", voice, "-s", str(rate_wpm), "--stdin", "-w", str(raw)]
        result = subprocess.run(command, input=text, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not raw.is_file() or raw.stat().st_size <= 44:
            raise CorpusError(
                f"espeak-ng failed to say {text!r} ({' '.join(command)}): exit {result.returncode} "
                f"{result.stderr.strip()}; check the voice exists with `espeak-ng --voices`"
            )
        audio, rate_hz = soundfile.read(str(raw), dtype="float64", always_2d=True)
    signal = audio.mean(axis=1)
    if rate_hz != SAMPLE_RATE_HZ:
        from scipy.signal import resample_poly  # scipy is slow to import; only synthesis needs it

        divisor = math.gcd(SAMPLE_RATE_HZ, rate_hz)
        signal = resample_poly(signal, SAMPLE_RATE_HZ // divisor, rate_hz // divisor)
    # Trim espeak's edge silence (and the breath tail of some variants, ~50 dB down) with the
    # loader's own speech detector, so the framing silence starts exactly at end of speech.
    start, end = find_speech(signal, SAMPLE_RATE_HZ)
    if end <= start:
        raise CorpusError(
            f"espeak-ng made no audible speech of {text!r} (voice {voice}); give it words it can say"
        )
    signal = normalise_peak(signal[start:end])
    lead = np.zeros(SAMPLE_RATE_HZ * LEADING_SILENCE_MS // 1000)
    trail = np.zeros(SAMPLE_RATE_HZ * TRAILING_SILENCE_MS // 1000)
    return np.concatenate([lead, signal, trail])


def normalise_peak(signal: np.ndarray) -> np.ndarray:
    """``signal`` scaled so that its peak is at :data:`PEAK_DBFS`."""
    return signal * (10 ** (PEAK_DBFS / 20) / np.abs(signal).max())


def to_wav_bytes(signal: np.ndarray) -> bytes:
    """16 kHz mono PCM16 WAV bytes of float samples in [-1, 1]."""
    pcm = np.clip(np.round(signal * 32767.0), -32768, 32767).astype("<i2")
    return pcm16_wav_bytes(pcm.tobytes())
