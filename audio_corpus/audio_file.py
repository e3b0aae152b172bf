"""Reading one audio file as an :class:`~audio_corpus.model.Utterance`, and writing one.

A corpus file is checked at load time, so a load test never fails half-way through a run
because of a bad file: missing, empty, truncated, an odd byte count data chunk
(:mod:`audio_corpus.riff`), zero-length audio or not audio at all ->
:class:`~voiceharness.errors.CorpusError` naming the file, what is wrong and what to do. A file
in another sample rate, with several channels or with float / 24-bit samples is converted to
16 kHz mono PCM16, with a :class:`~audio_corpus.model.CorpusWarning` naming the file. Where
speech starts and ends is found with :func:`voiceharness.vad.find_speech` unless the caller
knows.

::

    load_utterance_file(path, *, expected_intent, utterance_id=None, text="", reply_check="",
                        kind="clean", snr_db=None, voice="", words_per_minute=None,
                        speech_samples=None) -> Utterance
    pcm16_wav_bytes(pcm) -> bytes          # a plain 44-byte-header 16 kHz mono PCM16 WAV
"""

from __future__ import annotations

import io
import math
import warnings
import wave
from pathlib import Path

import numpy as np
import soundfile

from voiceharness.errors import CorpusError
from voiceharness.guide import SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES
from voiceharness.reply_check import parse_reply_check
from voiceharness.vad import find_speech

from .intents import check_intent_name
from .model import KINDS, CorpusWarning, Utterance
from .riff import check_riff_wav

_CONVERT_HINT = "convert it once with `sox IN.wav -r 16000 -c 1 -b 16 -e signed-integer OUT.wav`"


def load_utterance_file(
    path: str | Path,
    *,
    expected_intent: str,
    utterance_id: str | None = None,
    text: str = "",
    reply_check: str = "",
    kind: str = "clean",
    snr_db: float | None = None,
    voice: str = "",
    words_per_minute: int | None = None,
    speech_samples: tuple[int, int] | None = None,
) -> Utterance:
    """Load one WAV (or other libsndfile-readable) file as an :class:`Utterance`.

    ``utterance_id`` defaults to the file name without its extension. The file is checked and
    converted as described in the module docstring; CorpusError names the file and the fix.
    ``speech_samples`` is ``(start, end)`` of the speech in samples at 16 kHz when known;
    by default it is found with :func:`find_speech`. ``expected_intent`` is any intent name
    (see :func:`check_intent_name`), or ``""`` when the caller judges the reply itself.
    """
    path = Path(path)
    intent_problem = check_intent_name(expected_intent) if expected_intent else None
    if intent_problem:
        raise CorpusError(f"{path}: {intent_problem}")
    if kind not in KINDS:
        raise CorpusError(f"{path}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    try:
        parse_reply_check(reply_check)
    except ValueError as error:
        raise CorpusError(f"{path}: {error}") from None
    samples = _read_pcm16(path)
    if speech_samples is None:
        start, end = find_speech(samples, SAMPLE_RATE_HZ)
    else:
        start, end = speech_samples
        if not 0 <= start <= end <= samples.size:
            raise CorpusError(f"{path}: speech bounds {speech_samples} outside 0-{samples.size} samples")
    return Utterance(
        id=utterance_id if utterance_id is not None else path.stem,
        text=text,
        expected_intent=expected_intent,
        reply_check=reply_check,
        kind=kind,
        snr_db=snr_db,
        path=path,
        sample_rate_hz=SAMPLE_RATE_HZ,
        pcm=samples.astype("<i2", copy=False).tobytes(),
        speech_start_sample=start,
        speech_end_sample=end,
        voice=voice,
        words_per_minute=words_per_minute,
    )


def pcm16_wav_bytes(pcm: bytes) -> bytes:
    """A 16 kHz mono PCM16 WAV holding ``pcm``: a plain 44-byte header, no timestamps."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(SAMPLE_WIDTH_BYTES)
        writer.setframerate(SAMPLE_RATE_HZ)
        writer.writeframes(pcm)
    return buffer.getvalue()


def _read_pcm16(path: Path) -> np.ndarray:
    """The file's audio as 16 kHz mono int16 samples, converted if needed (with a warning)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(
            f"corpus file {path} not found; fix the manifest's path, or rebuild the bundled corpus "
            f"with `python -m audio_corpus.build`"
        ) from None
    except OSError as error:
        raise CorpusError(f"corpus file {path} cannot be read: {error}") from None
    if not data:
        raise CorpusError(f"corpus file {path} is empty (0 bytes); rebuild or re-export it as a WAV")
    if data[:4] == b"RIFF":
        check_riff_wav(path, data)
    try:
        info = soundfile.info(str(path))
        if info.frames == 0:
            raise CorpusError(
                f"corpus file {path} holds zero-length audio (no samples); re-record or rebuild it"
            )
        dtype = "int16" if info.subtype == "PCM_16" else "float64"
        audio, _ = soundfile.read(str(path), dtype=dtype, always_2d=True)
    except CorpusError:
        raise
    except (RuntimeError, TypeError, ValueError) as error:
        start = data[:16].decode("latin-1")
        raise CorpusError(
            f"corpus file {path} is not audio libsndfile can read ({error}; it starts with "
            f"{start!r}); replace it with a 16 kHz mono PCM16 WAV"
        ) from None
    if len(audio) == 0:
        raise CorpusError(f"corpus file {path} holds zero-length audio (no samples); re-record or rebuild it")
    reasons = []
    if info.samplerate != SAMPLE_RATE_HZ:
        reasons.append(f"{info.samplerate} Hz resampled to {SAMPLE_RATE_HZ} Hz")
    if info.channels != 1:
        reasons.append(f"{info.channels} channels mixed down to mono")
    if info.subtype != "PCM_16":
        reasons.append(f"{info.subtype} samples converted to PCM16")
    if not reasons:
        return audio[:, 0]
    signal = audio.astype(np.float64)
    if dtype == "int16":
        signal /= 32768.0
    signal = signal.mean(axis=1)
    if info.samplerate != SAMPLE_RATE_HZ:
        from scipy.signal import resample_poly  # scipy is slow to import; only conversions need it

        divisor = math.gcd(SAMPLE_RATE_HZ, info.samplerate)
        signal = resample_poly(signal, SAMPLE_RATE_HZ // divisor, info.samplerate // divisor)
    scaled = np.round(signal * 32767.0)
    if np.any(np.abs(scaled) > 32767):
        reasons.append("samples beyond full scale clipped")
    warnings.warn(
        CorpusWarning(f"corpus file {path}: {'; '.join(reasons)} at load time; {_CONVERT_HINT}", tuple(reasons)),
        stacklevel=3,
    )
    return np.clip(scaled, -32768, 32767).astype(np.int16)
