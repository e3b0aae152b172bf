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

__all__ = [
    "ECHO_SCORE_RATIO_FLOOR",
    "ECHO_WORD_WEIGHT",
    "GARBAGE_PHONE_WEIGHT",
    "SCORE_RATIO_FLOOR",
    "Recognition",
    "Recognizer",
]

# Cost of each extra phone on the garbage path, and of each extra echoed word. Chosen from
# the measurements in docs/recognition.md (smaller garbage weight = fewer false rejections,
# more out-of-grammar speech accepted).
GARBAGE_PHONE_WEIGHT = 1e-6
ECHO_WORD_WEIGHT = 1e-3
# Second opinion when the garbage path wins: the best command path's score minus a free
# phone decode's score, per 10 ms frame (pocketsphinx's scaled log units). Commands that
# espeak-ng voices say score above this even when the garbage path beat them.
SCORE_RATIO_FLOOR = -17.0
# The same ratio for an accepted ECHO: "echo" plus a free word loop is the grammar's widest
# path, the one out-of-grammar speech most often wins through ("play some music" -> "echo
# music"); measured echoes score above this, forced ones below.
ECHO_SCORE_RATIO_FLOOR = -27.5

# The 39 context-independent phones of the en-us acoustic model, as garbage "words".
_PHONES = [
    "AA",
    "AE",
    "AH",
    "AO",
    "AW",
    "AY",
    "B",
    "CH",
    "D",
    "DH",
    "EH",
    "ER",
    "EY",
    "F",
    "G",
    "HH",
    "IH",
    "IY",
    "JH",
    "K",
    "L",
    "M",
    "N",
    "NG",
    "OW",
    "OY",
    "P",
    "R",
    "S",
    "SH",
    "T",
    "TH",
    "UH",
    "UW",
    "V",
    "W",
    "Y",
    "Z",
    "ZH",
]
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
    score_ratio: float | None = None  # computed only when the garbage path or ECHO won


_TOP_RULE = "public <utterance> = /1/ <command> | /1/ <garbage> | /1/ <opener> <garbage>;"


def _grammar_texts() -> tuple[str, str]:
    """(grammar with the garbage path, the same grammar with commands only)."""
    text = resources.files("gateway").joinpath("commands.jsgf").read_text(encoding="utf-8")
    if _TOP_RULE not in text:
        raise RuntimeError("gateway/commands.jsgf: the top rule changed; update recognizer._TOP_RULE")
    text = text.replace("GARBAGE_PHONE_WEIGHT", repr(GARBAGE_PHONE_WEIGHT)).replace(
        "ECHO_WORD_WEIGHT", repr(ECHO_WORD_WEIGHT)
    )
    return text, text.replace(_TOP_RULE, "public <utterance> = <command>;")


def _new_decoder(grammars: tuple[str, str]):
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
    decoder.add_jsgf_string("garbage", grammars[0])
    decoder.add_jsgf_string("commands", grammars[1])
    decoder.add_allphone_file("phones", None)
    decoder.activate_search("garbage")
    return decoder


def _decode(decoder, search: str, data: bytes) -> tuple[str, float]:
    """(hypothesis, score in log units) of one utterance under one search."""
    if decoder.current_search() != search:
        decoder.activate_search(search)
    # Feature state (the cepstral mean, the noise estimate) carries over from the previous
    # utterance, so a decoder's answer depended on what it heard before. Resetting it (0.05 ms)
    # makes the same audio get the same answer in any decoder, in any thread.
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(data, full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    if hyp is None:
        return "", float("-inf")
    return hyp.hypstr, float(decoder.get_logmath().log(hyp.score))


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
        self._grammars = _grammar_texts()
        self._local = threading.local()

    def _decoder(self):
        decoder = getattr(self._local, "decoder", None)
        if decoder is None:
            decoder = self._local.decoder = _new_decoder(self._grammars)
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
        # Seeded per call: the same audio gives the same answer, whichever thread decodes it.
        samples = samples + np.random.default_rng(0).normal(0.0, _DITHER_STD, samples.size)
        data = np.clip(samples, -32768, 32767).astype("<i2").tobytes()
        raw, score = _decode(decoder, "garbage", data)
        words = raw.split()
        garbage = [w for w in words if w.startswith(_GARBAGE_PREFIX)]
        ratio = None
        rejected = bool(garbage) or not words
        if words and words[0] == "echo" and not garbage:
            _, phone_score = _decode(decoder, "phones", data)
            ratio = (score - phone_score) / max(decoder.n_frames(), 1)
            # Rejected, but the transcript still shows what the grammar forced.
            rejected = ratio < ECHO_SCORE_RATIO_FLOOR
        elif rejected:
            # The garbage path won (or nothing did): ask the command grammar alone, and
            # accept its answer if it explains the audio nearly as well as free phones do.
            command_hyp, command_score = _decode(decoder, "commands", data)
            _, phone_score = _decode(decoder, "phones", data)
            frames = max(decoder.n_frames(), 1)
            ratio = (command_score - phone_score) / frames
            if command_hyp and ratio >= SCORE_RATIO_FLOOR:
                raw, words, rejected = command_hyp, command_hyp.split(), False
        transcript = " ".join(w for w in words if not w.startswith(_GARBAGE_PREFIX))
        return Recognition(transcript, rejected, (time.perf_counter() - started) * 1000, audio_ms, raw, ratio)
