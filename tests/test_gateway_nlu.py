"""gateway.nlu: transcripts to the NLU contract's intents, slots and confidences."""

from __future__ import annotations

import pytest

from gateway.nlu import EMPTY_CONFIDENCE, EXACT_CONFIDENCE, normalize, understand
from voiceharness.guide import INTENTS, PRACTICAL_EXAMPLES


@pytest.mark.parametrize("transcript,intent", sorted(PRACTICAL_EXAMPLES.items()))
def test_the_guides_practical_examples_map_to_their_intents(transcript, intent):
    assert understand(transcript).intent == intent


@pytest.mark.parametrize(
    "transcript",
    [
        "hello",
        "hi",
        "hey jarvis",
        "good morning jarvis",
        "Good evening, Jarvis!",
        "good afternoon",
        "hello there",
    ],
)
def test_greetings(transcript):
    assert understand(transcript).intent == "GREETING"


@pytest.mark.parametrize(
    "transcript",
    [
        "what time is it",
        "What is the time?",
        "what's the time",
        "tell me the time",
        "what time is it jarvis",
        "jarvis what time is it",
        "Jarvis, tell me the time",
        "do you know what time it is",
        "could you tell me the time please",
    ],
)
def test_time_questions(transcript):
    assert understand(transcript).intent == "TIME_NOW"


@pytest.mark.parametrize(
    "transcript",
    [
        "how is the weather",
        "how's the weather today",
        "what's the weather like",
        "what is the weather today",
        "weather forecast",
        "what's the forecast",
        "is it going to rain, what does the weather say",
    ],
)
def test_weather_questions(transcript):
    assert understand(transcript).intent == "WEATHER_SIMPLE"


@pytest.mark.parametrize(
    "transcript,words",
    [
        ("echo hello world", "hello world"),
        ("Echo: testing, one two three.", "testing one two three"),
        ("echo what time is it", "what time is it"),
        ("ECHO   please   call my friend", "please call my friend"),
        ("jarvis echo good morning", "good morning"),
    ],
)
def test_echo_slot_holds_the_words_after_the_keyword(transcript, words):
    result = understand(transcript)
    assert result.intent == "ECHO"
    assert result.slots == {"words": words}


@pytest.mark.parametrize(
    "transcript",
    [
        "play some music",
        "turn off the lights",
        "order a pizza",
        "what is the capital of france",
        "echo",
        "what is the",
        "time flies",
        "hello darkness my old friend",
        "set a timer",
        "jarvis",
        "jarvis play some music",
    ],
)
def test_other_requests_are_unknown(transcript):
    result = understand(transcript)
    assert result.intent == "UNKNOWN"
    assert result.slots == {}


def test_the_empty_transcript_is_unknown_with_full_confidence():
    assert understand("") == understand("   ") == understand("?!")
    assert understand("").intent == "UNKNOWN" and understand("").confidence == EMPTY_CONFIDENCE


def test_exact_phrasings_are_more_confident_than_keyword_matches():
    assert understand("what time is it").confidence == EXACT_CONFIDENCE
    assert understand("could you tell me the time please").confidence < EXACT_CONFIDENCE


@pytest.mark.parametrize("transcript", ["hello", "echo a b", "what time is it", "weather", "nonsense", ""])
def test_every_answer_is_a_contract_intent_with_a_confidence_in_0_1(transcript):
    result = understand(transcript)
    assert result.intent in INTENTS
    assert 0.0 <= result.confidence <= 1.0


def test_normalize_expands_contractions_and_drops_punctuation():
    assert normalize("  What's the Weather, Jarvis? ") == "what is the weather jarvis"


@pytest.mark.parametrize(
    "transcript,intent",
    [
        ("jarvis hello", "GREETING"),
        ("jarvis how is the weather", "WEATHER_SIMPLE"),
        ("hello jarvis", "GREETING"),
    ],
)
def test_the_wake_word_may_come_first_or_last(transcript, intent):
    assert understand(transcript).intent == intent
    assert understand(transcript).confidence == EXACT_CONFIDENCE
