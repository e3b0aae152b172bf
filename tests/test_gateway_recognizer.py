"""gateway.recognizer: real pocketsphinx decoding of espeak-ng speech, with rejection."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from gateway.nlu import understand
from gateway.recognizer import Recognizer
from gateway.synthesizer import Synthesizer

pytestmark = pytest.mark.requires("espeak-ng")

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
    ("jarvis what time is it", "TIME_NOW"),
    ("jarvis how is the weather", "WEATHER_SIMPLE"),
]
OUT_OF_GRAMMAR = [
    "play some music",
    "turn off the lights",
    "order a pizza",
    "what is the capital of france",
    "set an alarm for seven",
    "navigate to the airport",
]
# Measured on a held-out espeak-ng set (docs/recognition.md): about 87 % of out-of-grammar
# requests are rejected, so this asserts a rate, not every sentence ("what is the capital of
# france" is heard as "what is the weather like" in some voices).
MIN_REJECTED_SHARE = 0.7


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


def test_most_out_of_grammar_speech_is_rejected(recognizer):
    results = {
        (text, voice): recognizer.recognize(speech(text, voice, rate_wpm))
        for voice, rate_wpm in VOICES
        for text in OUT_OF_GRAMMAR
    }
    accepted = {key: r.transcript for key, r in results.items() if not r.rejected}
    share = 1 - len(accepted) / len(results)
    print(f"out-of-grammar rejected: {share:.0%}; accepted: {accepted}")
    assert share >= MIN_REJECTED_SHARE, accepted


@pytest.mark.parametrize("voice,rate_wpm", [("en-gb", 160), ("en", 140)])
@pytest.mark.parametrize("text,intent", [("hello jarvis", "GREETING"), ("good morning jarvis", "GREETING")])
def test_non_rhotic_jarvis_is_a_greeting(recognizer, text, intent, voice, rate_wpm):
    # cmudict spells "jarvis" with an R; en-gb voices drop it (recognizer.EXTRA_PRONUNCIATIONS).
    assert heard_intent(recognizer, speech(text, voice, rate_wpm)) == intent


@pytest.mark.parametrize("text", ["hello jarvis", "echo hello world", "what time is it", "order a pizza"])
def test_leading_and_trailing_silence_do_not_change_the_answer(recognizer, text):
    clip = Synthesizer("en-us", 170).synthesize(text)
    quiet = np.random.default_rng(2).normal(0, 20, 16000 * 2).astype("<i2").tobytes()
    answers = set()
    for lead_ms, trail_ms in ((0, 0), (300, 200), (800, 500), (100, 900)):
        pcm = b"\0\0" * (16 * lead_ms) + clip + b"\0\0" * (16 * trail_ms)
        result = recognizer.recognize(pcm)
        answers.add((result.transcript, result.rejected))
    assert len(answers) == 1, answers
    if text != "order a pizza":  # a command keeps its answer in faint noise (-64 dBFS) too
        noisy = recognizer.recognize(quiet[: 2 * 16 * 600] + clip + quiet[: 2 * 16 * 400])
        assert {(noisy.transcript, noisy.rejected)} == answers


def test_a_command_that_is_accepted_carries_its_confidence_ratio(recognizer):
    result = recognizer.recognize(speech("what time is it"))
    assert not result.rejected
    assert result.score_ratio is not None and result.score_ratio > -100


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


def test_a_two_second_command_decodes_in_less_cpu_time_than_it_lasts(recognizer):
    """CPU time, not wall time: other processes on a loaded machine do not count. A decoder that
    needs more CPU than the speech lasts could never keep up (a wrong model or search settings);
    how fast it is, in wall time, is a figure for bench/."""
    pcm = speech("what time is it jarvis")
    recognizer.recognize(pcm)  # this thread's decoder is built on first use
    cpu_before_s = time.thread_time()
    recognizer.recognize(pcm)  # decodes in this thread
    cpu_s = time.thread_time() - cpu_before_s
    audio_s = len(pcm) / 2 / 16000
    assert cpu_s < audio_s, (cpu_s, audio_s)


def test_four_threads_decoding_at_once_agree_with_one_thread(recognizer):
    texts = ["hello jarvis", "echo hello world", "what time is it", "how is the weather", "order a pizza"]
    clips = [speech(text) for text in texts] * 4
    alone = [recognizer.recognize(pcm) for pcm in clips]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(recognizer.recognize, clips))
    assert [(r.transcript, r.rejected) for r in together] == [(r.transcript, r.rejected) for r in alone]
