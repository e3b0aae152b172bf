"""Speech recognition for the reference gateway: pocketsphinx 5 over a JSGF command grammar.

::

    recognizer = Recognizer()                  # loads the grammar text once
    result = recognizer.recognize(pcm_bytes)   # PCM16 LE mono, 16 kHz unless told otherwise
    result.transcript, result.rejected, result.decode_ms

The grammar (``commands.jsgf`` next to this file) holds the command language and a garbage
path: a weighted loop over the acoustic model's phones. Speech that no command explains
comes back through that loop, and :attr:`Recognition.rejected` is then true; the pipeline
turns that into ``UNKNOWN``. docs/recognition.md compares this with the other rejection
methods that were measured (grammar only, a confidence ratio against a phone decode, a second
decode with the free en-us language model).

A pocketsphinx ``Decoder`` is not thread-safe, so each thread gets its own (built on the
thread's first call, ~0.2 s, ~25 MB); :meth:`Recognizer.recognize` is safe to call from a
pool. Nothing is downloaded: the model ships in the pocketsphinx wheel.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from importlib import resources

import numpy as np
from scipy.signal import resample_poly

from voiceharness.guide import SAMPLE_RATE_HZ

__all__ = ["Recognition", "Recognizer", "GARBAGE_PHONE_WEIGHT", "ECHO_WORD_WEIGHT"]

# Cost of each extra phone on the garbage path, and of each extra echoed word. Chosen from
# the measurements in docs/recognition.md (smaller garbage weight = fewer false rejections,
# more out-of-grammar speech accepted).
GARBAGE_PHONE_WEIGHT = 1e-6
ECHO_WORD_WEIGHT = 1e-3

# The 39 context-independent phones of the en-us acoustic model, as garbage "words".
_PHONES = (
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW "
    "V W Y Z ZH"
).split()
_GARBAGE_PREFIX = "ph_"

# Below this RMS (about -60 dBFS) the input is treated as silence without decoding.
_SILENCE_RMS = 32768 * 10 ** (-60 / 20)
# Low-level noise added before decoding. Digital silence (exact zeros, as synthesized
# corpora pad their utterances) breaks pocketsphinx's noise estimate and cepstral mean,
# and the search then ends in no complete path at all; measured in docs/recognition.md.
_DITHER_STD = 8.0


@dataclass(frozen=True)
class Recognition:
    """What was heard: ``transcript`` holds command words only (garbage removed)."""

    transcript: str
    rejected: bool
    decode_ms: float
    audio_ms: float
    raw_hypothesis: str = ""


def _grammar_text() -> str:
    text = resources.files("gateway").joinpath("commands.jsgf").read_text(encoding="utf-8")
    return text.replace("GARBAGE_PHONE_WEIGHT", repr(GARBAGE_PHONE_WEIGHT)).replace(
        "ECHO_WORD_WEIGHT", repr(ECHO_WORD_WEIGHT)
    )


def _new_decoder(grammar: str):
    from pocketsphinx import Config, Decoder, get_model_path

    config = Config(
        hmm=get_model_path("en-us/en-us"),
        dict=get_model_path("en-us/cmudict-en-us.dict"),
        lm=None,
        loglevel="FATAL",
        # The lattice pass adds time and, on a grammar, changes nothing we use.
        bestpath=False,
    )
    decoder = Decoder(config)
    for phone in _PHONES:
        decoder.add_word(_GARBAGE_PREFIX + phone.lower(), phone, False)
    decoder.add_word(_GARBAGE_PREFIX + "sil", "SIL", True)
    decoder.add_jsgf_string("commands", grammar)
    decoder.activate_search("commands")
    return decoder


def to_decoder_pcm(pcm: bytes, sample_rate_hz: int) -> np.ndarray:
    """PCM16 LE mono bytes at any rate -> float samples at 16 kHz."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float32)
    if sample_rate_hz != SAMPLE_RATE_HZ and samples.size:
        g = np.gcd(sample_rate_hz, SAMPLE_RATE_HZ)
        samples = resample_poly(samples, SAMPLE_RATE_HZ // g, sample_rate_hz // g).astype(np.float32)
    return samples


class Recognizer:
    """Grammar recognizer with rejection; one pocketsphinx decoder per calling thread."""

    def __init__(self) -> None:
        self._grammar = _grammar_text()
        self._local = threading.local()

    def _decoder(self):
        decoder = getattr(self._local, "decoder", None)
        if decoder is None:
            decoder = self._local.decoder = _new_decoder(self._grammar)
            self._local.rng = np.random.default_rng(0)
        return decoder

    def warm_up(self) -> None:
        """Build this thread's decoder and run one decode, so the first turn is not slow."""
        self.recognize(np.random.default_rng(1).normal(0, 300, 8000).astype("<i2").tobytes())

    def recognize(self, pcm: bytes, sample_rate_hz: int = SAMPLE_RATE_HZ) -> Recognition:
        """Decode one utterance (PCM16 LE mono). Silence gives an empty, rejected result."""
        started = time.perf_counter()
        samples = to_decoder_pcm(pcm, sample_rate_hz)
        audio_ms = samples.size * 1000 / SAMPLE_RATE_HZ
        if samples.size < SAMPLE_RATE_HZ // 10 or float(np.sqrt(np.mean(samples**2))) < _SILENCE_RMS:
            return Recognition("", True, (time.perf_counter() - started) * 1000, audio_ms)
        decoder = self._decoder()
        samples = samples + self._local.rng.normal(0.0, _DITHER_STD, samples.size)
        data = np.clip(samples, -32768, 32767).astype("<i2").tobytes()
        decoder.start_utt()
        decoder.process_raw(data, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        raw = hyp.hypstr if hyp is not None else ""
        words = raw.split()
        garbage = [w for w in words if w.startswith(_GARBAGE_PREFIX)]
        transcript = " ".join(w for w in words if not w.startswith(_GARBAGE_PREFIX))
        # No complete path (empty hypothesis) also counts as rejected.
        rejected = bool(garbage) or not words
        if rejected and len(garbage) == len(words):
            transcript = ""
        return Recognition(transcript, rejected, (time.perf_counter() - started) * 1000, audio_ms, raw)
