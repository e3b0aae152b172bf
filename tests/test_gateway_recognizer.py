"""gateway.recognizer: real pocketsphinx decoding of espeak-ng speech, with rejection."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from gateway.nlu import understand
from gateway.recognizer import Recognizer
from gateway.synthesizer import Synthesizer

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="needs espeak-ng (apt-get install espeak-ng)"
)

VOICES = [("en-us", 170), ("en-us+m3", 150)]
IN_GRAMMAR = [
    ("hello jarvis", "GREETING"),
    ("hi jarvis", "GREETING"),
    ("good morning", "GREETING"),
    ("echo hello world", "ECHO"),
    ("echo testing one two three", "ECHO"),
    ("what time is it", "TIME_NOW"),
    ("what is the time", "TIME_NOW"),
    ("how is the weather", "WEATHER_SIMPLE"),
    ("what's the weather like", "WEATHER_SIMPLE"),
    ("weather forecast", "WEATHER_SIMPLE"),
]
OUT_OF_GRAMMAR = ["play some music", "turn off the lights", "order a pizza", "what is the capital of france"]


def speech(text: str, voice: str = "en-us", rate_wpm: int = 170, pad_ms: int = 300) -> bytes:
    """espeak-ng speech padded with digital silence, as a synthesized corpus gives it."""
    pad = b"\0\0" * (16 * pad_ms)
    return pad + Synthesizer(voice, rate_wpm).synthesize(text) + pad


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer()


def heard_intent(recognizer: Recognizer, pcm: bytes, sample_rate_hz: int = 16000) -> str:
    result = recognizer.recognize(pcm, sample_rate_hz)
    return "UNKNOWN" if result.rejected else understand(result.transcript).intent


@pytest.mark.parametrize("voice,rate_wpm", VOICES)
@pytest.mark.parametrize("text,intent", IN_GRAMMAR)
def test_synthesized_commands_are_recognised_as_their_intent(recognizer, text, intent, voice, rate_wpm):
    assert heard_intent(recognizer, speech(text, voice, rate_wpm)) == intent


@pytest.mark.parametrize("voice,rate_wpm", VOICES)
@pytest.mark.parametrize("text", OUT_OF_GRAMMAR)
def test_out_of_grammar_speech_is_rejected(recognizer, text, voice, rate_wpm):
    result = recognizer.recognize(speech(text, voice, rate_wpm))
    assert result.rejected, result
    assert understand(result.transcript).intent != "GREETING" or result.rejected


def test_the_guides_examples_come_back_as_the_words_spoken(recognizer):
    for text in ("hello jarvis", "what time is it", "how is the weather"):
        assert recognizer.recognize(speech(text)).transcript == text


def test_speech_at_another_sample_rate_is_resampled(recognizer):
    from scipy.signal import resample_poly

    pcm16k = np.frombuffer(speech("what time is it"), dtype="<i2").astype(np.float32)
    pcm8k = resample_poly(pcm16k, 1, 2).astype("<i2").tobytes()
    assert heard_intent(recognizer, pcm8k, 8000) == "TIME_NOW"


@pytest.mark.parametrize(
    "pcm",
    [
        b"",
        b"\0\0" * 16000,
        np.random.default_rng(3).normal(0, 1500, 32000).astype("<i2").tobytes(),
        (3000 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype("<i2").tobytes(),
        b"\x01",
    ],
    ids=["empty", "silence", "white-noise", "tone", "odd-byte"],
)
def test_silence_and_noise_give_an_empty_rejected_transcript(recognizer, pcm):
    result = recognizer.recognize(pcm)
    assert result.rejected
    assert result.transcript == ""


def test_a_two_second_command_decodes_in_well_under_a_second(recognizer):
    pcm = speech("what time is it jarvis")
    recognizer.recognize(pcm)  # this thread's decoder is built on first use
    assert recognizer.recognize(pcm).decode_ms < 1000


def test_four_threads_decoding_at_once_agree_with_one_thread(recognizer):
    texts = ["hello jarvis", "echo hello world", "what time is it", "how is the weather", "order a pizza"]
    clips = [speech(text) for text in texts] * 4
    alone = [recognizer.recognize(pcm) for pcm in clips]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(recognizer.recognize, clips))
    assert [(r.transcript, r.rejected) for r in together] == [(r.transcript, r.rejected) for r in alone]
