"""audio_corpus.intents: which names an expected intent may have, and a note for a likely typo."""

from __future__ import annotations

from audio_corpus.intents import check_intent_name, near_standard_intent
from voiceharness.guide import INTENTS


def test_any_upper_case_name_is_an_intent_and_a_bad_one_gets_a_suggestion():
    assert check_intent_name("LIGHTS_OFF_2") is None
    assert check_intent_name("play music") == (
        "expected_intent 'play music' is not an intent name: use upper-case letters, digits and _ only "
        "(e.g. PLAY_MUSIC)"
    )
    assert "empty expected_intent" in check_intent_name("")
    assert check_intent_name("!!!").endswith("digits and _ only")  # nothing to suggest


def test_only_the_smartjarvis_intents_when_standard_only():
    assert all(check_intent_name(intent, standard_only=True) is None for intent in INTENTS)
    assert "use one of GREETING" in check_intent_name("LIGHTS_OFF", standard_only=True)


def test_a_name_one_typo_from_a_standard_intent_gets_a_note():
    assert "did you mean GREETING?" in near_standard_intent("GREETNG")
    assert near_standard_intent("GREETING") is None
    assert near_standard_intent("LIGHTS_OFF") is None
