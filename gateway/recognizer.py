"""Speech recognition for the reference gateway: pocketsphinx 5 over a JSGF command grammar.

::

    recognizer = Recognizer()                  # loads the grammar text once
    result = recognizer.recognize(pcm_bytes)   # PCM16 LE mono, 16 kHz unless told otherwise
    result.transcript, result.rejected, result.decode_ms, result.score_ratio

The grammar (``commands.jsgf`` next to this file) holds the command language and a garbage
path (a weighted loop over the acoustic model's phones); :data:`EXTRA_PRONUNCIATIONS` adds
non-rhotic pronunciations to pocketsphinx's dictionary. Rejection takes two measurements:

1. Decode with the full grammar. Commands compete with the garbage loop, so most
   out-of-grammar speech comes back as garbage.
2. Decode the same audio with a free phone loop (pocketsphinx allphone search) and compute
   the confidence ``score_ratio`` = (command path score - phone loop score) per *speech* frame
   (the command path's own segmentation minus its silence and fillers, so leading and
   trailing silence of any length do not dilute it). A command is accepted when its ratio is
   at least its intent's floor (:data:`ACCEPT_RATIO_FLOOR`). When the garbage path won, the
   command grammar alone is decoded and its best command accepted only above a stricter floor
   (:data:`RESCUE_RATIO_FLOOR`), so that commands the garbage loop out-scored are not lost.

docs/recognition.md has the measurements (the bundled corpus and a held-out espeak-ng set in
other voices and rates) behind the weights and floors.

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

from gateway.nlu import understand
from voiceharness.guide import SAMPLE_RATE_HZ

__all__ = [
    "ACCEPT_RATIO_FLOOR",
    "ECHO_LOOP_WEIGHT",
    "ECHO_WORD_WEIGHT",
    "EXTRA_PRONUNCIATIONS",
    "GARBAGE_PHONE_WEIGHT",
    "RESCUE_RATIO_FLOOR",
    "Recognition",
    "Recognizer",
]

# Cost of each extra phone on the garbage path (smaller = fewer commands lost to garbage, more
# out-of-grammar speech reaching the ratio check).
GARBAGE_PHONE_WEIGHT = 1e-10
# ECHO's free word loop: the cost of entering it instead of a stock phrase, and of each extra
# word in it (a loop without these inserts short words everywhere).
ECHO_LOOP_WEIGHT = 1e-12
ECHO_WORD_WEIGHT = 1e-15
# Confidence floors on score_ratio (pocketsphinx's scaled log units per 10 ms speech frame),
# per intent, tuned on the held-out set (docs/recognition.md), not on the corpus.
# ACCEPT: a command the full grammar chose over garbage. RESCUE: the best command of the
# command grammar alone, when garbage won.
ACCEPT_RATIO_FLOOR = {"GREETING": -60.0, "ECHO": -70.0, "TIME_NOW": -57.0, "WEATHER_SIMPLE": -40.0}
# ECHO is never rescued: out-of-grammar speech forced into "echo <words>" scored as high as
# real echoes the garbage path had beaten.
RESCUE_RATIO_FLOOR = {"GREETING": -62.0, "ECHO": float("inf"), "TIME_NOW": -51.5, "WEATHER_SIMPLE": -50.0}

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

# Extra pronunciations added to pocketsphinx's cmudict, as (word(N), phones); N >= 10 never
# clashes with cmudict's own (2), (3)... Non-rhotic variants (British English, and espeak-ng's
# en/en-gb voices): an R after a vowel and not before one is dropped. cmudict spells only
# rhotic American English; without these a non-rhotic "hello jarvis" was heard as an echo
# ("echo dog nice"). Generated mechanically from cmudict for every word of commands.jsgf
# (docs/recognition.md); regenerate when the grammar's words change. Kept here rather than in
# a data file so that a non-editable install (the Dockerfile's `pip install .`) carries them.
EXTRA_PRONUNCIATIONS = (
    ("are(10)", "AA"),
    ("car(10)", "K AA"),
    ("door(10)", "D AO"),
    ("forecast(10)", "F AO K AE S T"),
    ("four(10)", "F AO"),
    ("here(10)", "HH IY"),
    ("jarvis(10)", "JH AA V AH S"),
    ("jarvis(11)", "JH AA V IH S"),
    ("more(10)", "M AO"),
    ("morning(10)", "M AO N IH NG"),
    ("party(10)", "P AA T IY"),
    ("start(10)", "S T AA T"),
    ("there(10)", "DH EH"),
    ("warm(10)", "W AO M"),
    ("your(10)", "Y AO"),
    ("your(11)", "Y UH"),
)

# Below this RMS (about -60 dBFS) the input is treated as silence without decoding.
_SILENCE_RMS = 32768 * 10 ** (-60 / 20)
# Low-level noise added before decoding. Digital silence (exact zeros, as synthesized
# corpora pad their utterances) breaks pocketsphinx's noise estimate and cepstral mean,
# and the search then ends in no complete path at all; measured in docs/recognition.md.
_DITHER_STD = 8.0
# Silence kept before and after the speech (see _trim_silence), and the level below which a
# frame never counts as speech (-55 dBFS).
_EDGE_MARGIN_MS = 250
_SPEECH_FLOOR_RMS = 32768 * 10 ** (-55 / 20)
# Segments that are not speech: silence, fillers, the grammar's null transitions.
_NON_SPEECH_PREFIXES = ("<", "(", "+", "[")


@dataclass(frozen=True)
class Recognition:
    """What was heard: ``transcript`` holds command words only (garbage removed)."""

    transcript: str
    rejected: bool
    decode_ms: float
    audio_ms: float
    raw_hypothesis: str = ""
    # (command path score - phone loop score) per speech frame; None when nothing was decoded.
    score_ratio: float | None = None


_TOP_RULE = "public <utterance> = /1/ [jarvis] <command> [jarvis] | /1/ <garbage>;"


def _grammar_texts() -> tuple[str, str]:
    """(grammar with the garbage path, the same grammar with commands only)."""
    text = resources.files("gateway").joinpath("commands.jsgf").read_text(encoding="utf-8")
    if _TOP_RULE not in text:
        raise RuntimeError("gateway/commands.jsgf: the top rule changed; update recognizer._TOP_RULE")
    for name, value in (
        ("GARBAGE_PHONE_WEIGHT", GARBAGE_PHONE_WEIGHT),
        ("ECHO_LOOP_WEIGHT", ECHO_LOOP_WEIGHT),
        ("ECHO_WORD_WEIGHT", ECHO_WORD_WEIGHT),
    ):
        text = text.replace(name, repr(value))
    return text, text.replace(_TOP_RULE, "public <utterance> = [jarvis] <command> [jarvis];")


def _new_decoder(grammars: tuple[str, str]):
    from pocketsphinx import Config, Decoder, get_model_path

    config = Config(
        hmm=get_model_path("en-us/en-us"),
        dict=get_model_path("en-us/cmudict-en-us.dict"),
        lm=None,
        loglevel="FATAL",
        # The lattice pass adds time and, on a grammar, made results worse (measured).
        bestpath=False,
    )
    decoder = Decoder(config)
    for phone in _PHONES:
        decoder.add_word(_GARBAGE_PREFIX + phone.lower(), phone, False)
    for word, phones in EXTRA_PRONUNCIATIONS:
        decoder.add_word(word, phones, False)
    decoder.add_jsgf_string("garbage", grammars[0])
    decoder.add_jsgf_string("commands", grammars[1])
    decoder.add_allphone_file("phones", None)
    decoder.activate_search("garbage")
    return decoder


@dataclass(frozen=True)
class _Decode:
    hypothesis: str
    score: float  # log units; -inf when no complete path
    speech_frames: int  # frames of the path's words (not silence or fillers)


def _decode(decoder, search: str, data: bytes) -> _Decode:
    """Best hypothesis, score and speech frames of one utterance under one search."""
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
        return _Decode("", float("-inf"), 0)
    frames = sum(
        seg.end_frame - seg.start_frame + 1
        for seg in (decoder.seg() or [])
        if not seg.word.startswith(_NON_SPEECH_PREFIXES)
    )
    return _Decode(hyp.hypstr, float(decoder.get_logmath().log(hyp.score)), frames)


def to_decoder_pcm(pcm: bytes, sample_rate_hz: int) -> np.ndarray:
    """PCM16 LE mono bytes at any rate -> float samples at 16 kHz."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float32)
    if sample_rate_hz != SAMPLE_RATE_HZ and samples.size:
        g = np.gcd(sample_rate_hz, SAMPLE_RATE_HZ)
        samples = resample_poly(samples, SAMPLE_RATE_HZ // g, sample_rate_hz // g).astype(np.float32)
    return samples


def _trim_silence(samples: np.ndarray) -> np.ndarray:
    """Cut (or pad) leading and trailing silence to exactly :data:`_EDGE_MARGIN_MS`.

    The gateway's endpointer hands over speech with anything from none to several hundred ms
    of silence around it; the decoders and the confidence ratio should see the same audio
    whatever the margin. A 10 ms frame is speech when its RMS is within 40 dB of the loudest
    frame (and above -55 dBFS); in noise loud enough to stay above that, nothing is cut.
    """
    frame = SAMPLE_RATE_HZ // 100
    count = samples.size // frame
    if count < 3:
        return samples
    rms = np.sqrt(np.mean(samples[: count * frame].reshape(count, frame).astype(np.float64) ** 2, axis=1))
    threshold = max(float(rms.max()) * 10 ** (-40 / 20), _SPEECH_FLOOR_RMS)
    speech = np.flatnonzero(rms > threshold)
    if speech.size == 0:
        return samples
    margin = _EDGE_MARGIN_MS // 10 * frame
    start = int(speech[0]) * frame - margin
    end = (int(speech[-1]) + 1) * frame + margin
    # Too little silence on an edge is made up with zeros (the dither covers them), so that
    # every framing of the same speech gives the decoders the same samples.
    return np.concatenate(
        [
            np.zeros(max(-start, 0), dtype=samples.dtype),
            samples[max(start, 0) : min(end, samples.size)],
            np.zeros(max(end - samples.size, 0), dtype=samples.dtype),
        ]
    )


def command_intent(transcript: str) -> str:
    """The intent a command-grammar transcript stands for (UNKNOWN for none or garbage)."""
    if not transcript or _GARBAGE_PREFIX in transcript:
        return "UNKNOWN"
    return understand(transcript).intent


class Recognizer:
    """Grammar recognizer with rejection; one pocketsphinx decoder per calling thread.

    ``accept_floor`` / ``rescue_floor`` override :data:`ACCEPT_RATIO_FLOOR` /
    :data:`RESCUE_RATIO_FLOOR` (per intent); pass floors of ``-inf`` to measure ratios.
    """

    def __init__(
        self,
        accept_floor: dict[str, float] | None = None,
        rescue_floor: dict[str, float] | None = None,
    ) -> None:
        self._grammars = _grammar_texts()
        self._local = threading.local()
        self.accept_floor = dict(ACCEPT_RATIO_FLOOR if accept_floor is None else accept_floor)
        self.rescue_floor = dict(RESCUE_RATIO_FLOOR if rescue_floor is None else rescue_floor)

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
        samples = _trim_silence(samples)
        decoder = self._decoder()
        # Seeded per call: the same audio gives the same answer, whichever thread decodes it.
        samples = samples + np.random.default_rng(0).normal(0.0, _DITHER_STD, samples.size)
        data = np.clip(samples, -32768, 32767).astype("<i2").tobytes()

        first = _decode(decoder, "garbage", data)
        intent = command_intent(first.hypothesis)
        if intent != "UNKNOWN":
            candidate, floors = first, self.accept_floor
        else:
            # Garbage (or nothing) won: the command grammar's best answer, on a stricter floor.
            candidate, floors = _decode(decoder, "commands", data), self.rescue_floor
            intent = command_intent(candidate.hypothesis)
        ratio = None
        accepted = False
        if intent != "UNKNOWN" and candidate.speech_frames > 0:
            phones = _decode(decoder, "phones", data)
            if phones.score > float("-inf"):
                ratio = (candidate.score - phones.score) / candidate.speech_frames
                accepted = ratio >= floors.get(intent, float("inf"))
        # A rejected command path keeps its words (they show what the grammar forced); when the
        # garbage path won, the transcript is what it holds besides garbage (usually nothing).
        raw = candidate.hypothesis if candidate is first or accepted else first.hypothesis
        transcript = " ".join(w for w in raw.split() if not w.startswith(_GARBAGE_PREFIX))
        return Recognition(
            transcript, not accepted, (time.perf_counter() - started) * 1000, audio_ms, raw, ratio
        )
