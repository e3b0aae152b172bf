"""The learned second opinion on a reply's intent (voiceharness/expectations/learned.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from voiceharness.expectations import load_expectations
from voiceharness.expectations.learned import (
    MIN_AGREEMENT,
    MIN_PROBABILITY,
    IntentModel,
    features,
    fit,
    judge_unjudged,
    model_disagrees,
    names_two_subjects,
)


@pytest.fixture(scope="module")
def smartjarvis():
    return load_expectations("smartjarvis")


# Language-model transcripts of retired held-out replies (flite's slt) that the rules leave
# unjudged and a person classifies at once.
UNJUDGED_BY_THE_RULES = [
    ("no idea about the weather i'm afraid", "how is the weather", "WEATHER_SIMPLE"),
    ("i can't make heads or tails of that", "sing a song", "UNKNOWN"),
    ("that's not something i know how to handle", "order a pizza", "UNKNOWN"),
    ("morning how can i make your day easier", "hello jarvis", "GREETING"),
]


@pytest.mark.parametrize(("transcript", "request_text", "intent"), UNJUDGED_BY_THE_RULES)
def test_the_model_decides_what_the_rules_leave_unjudged(smartjarvis, transcript, request_text, intent):
    rules = smartjarvis.judge(transcript, request_text)
    assert rules.intent is None  # without the model: unjudged
    decided = judge_unjudged(smartjarvis, rules, transcript, request_text)
    assert decided.intent == intent
    assert decided.score >= MIN_PROBABILITY and decided.runner_up and decided.runner_up_score < decided.score
    assert decided.scores == rules.scores  # the rules' scores stay for the turns file


def test_a_verdict_of_the_rules_is_never_changed(smartjarvis):
    rules = smartjarvis.judge("the current time is nine oh five a m", "what time is it")
    assert rules.intent == "TIME_NOW"
    assert judge_unjudged(smartjarvis, rules, "the current time is nine oh five a m", "what time is it") is rules


# Language-model transcripts of retired held-out replies that the rules judged as another intent:
# refusals opening with "Ha," heard as "hi" ("Ha, singing isn't one of my talents", "Ha, I wish!
# That's not something I can do"), judged greetings. (Until round 13 the examples were a greeting,
# "Oh, hi! Just say the word.", heard as a refusal: the rules judge it right since "say the word"
# is a greeting's related phrase.)
WRONG_BY_THE_RULES = [
    ("hi singing isn't one of my talents sorry about that", "sing me a song", "GREETING"),
    ("hi wage that's not something i can do", "can you dance", "GREETING"),
]


@pytest.mark.parametrize(("transcript", "request_text", "rules_say"), WRONG_BY_THE_RULES)
def test_a_verdict_of_the_rules_the_model_disagrees_with_goes(smartjarvis, transcript, request_text, rules_say):
    rules = smartjarvis.judge(transcript, request_text)
    assert rules.intent == rules_say
    assert IntentModel.builtin().probabilities(smartjarvis, transcript, request_text)[rules_say] < MIN_AGREEMENT
    assert model_disagrees(smartjarvis, rules, transcript, request_text)


def test_a_verdict_of_the_rules_the_model_agrees_with_stays_and_an_unjudged_one_is_not_its_to_take(smartjarvis):
    transcript = "the current time is nine oh five a m"
    rules = smartjarvis.judge(transcript, "what time is it")
    assert rules.intent == "TIME_NOW" and not model_disagrees(smartjarvis, rules, transcript, "what time is it")
    unjudged = smartjarvis.judge("sorry", "sing a song")
    assert unjudged.intent is None and not model_disagrees(smartjarvis, unjudged, "sorry", "sing a song")


def test_a_reply_that_names_two_intents_is_not_guessed_by_the_model(smartjarvis):
    """The rules leave it unjudged (two subjects, close scores); the model, which has read the
    published weather refusals, leans to WEATHER_SIMPLE, and is not asked."""
    transcript, request_text = "it's nine oh five and i can't check the weather", "what time is it"
    rules = smartjarvis.judge(transcript, request_text)
    assert rules.intent is None
    assert names_two_subjects(smartjarvis, transcript, request_text)
    assert judge_unjudged(smartjarvis, rules, transcript, request_text, min_probability=0.0).intent is None
    assert not names_two_subjects(smartjarvis, "it's nine oh five", request_text)


@pytest.mark.parametrize(("transcript", "request_text"), [
    ("sorry", "sing a song"),  # too little
    ("the of and", "sing a song"),
    ("", "sing a song"),
])
def test_a_reply_the_model_is_unsure_of_stays_unjudged(smartjarvis, transcript, request_text):
    rules = smartjarvis.judge(transcript, request_text)
    assert rules.intent is None
    model = IntentModel.builtin()
    if transcript:
        assert max(model.probabilities(smartjarvis, transcript, request_text).values()) < MIN_PROBABILITY
    assert judge_unjudged(smartjarvis, rules, transcript, request_text).intent is None


def test_the_model_judges_only_expectations_with_its_intents(tmp_path, smartjarvis):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"intents": {"GREETING": {"keywords": ["hello"]},
                                             "UNKNOWN": {"keywords": ["pardon"]}}}))
    expectations = load_expectations(other)
    transcript, request_text, _ = UNJUDGED_BY_THE_RULES[2]
    rules = expectations.judge(transcript, request_text)
    assert rules.intent is None
    assert not IntentModel.builtin().applies_to(expectations) and IntentModel.builtin().applies_to(smartjarvis)
    assert judge_unjudged(expectations, rules, transcript, request_text).intent is None


def test_the_request_said_back_and_the_clock_time_are_placeholders(smartjarvis):
    echo = features(smartjarvis, "you said feed the cat", "echo feed the cat")
    assert echo["w:<request>"] == 1.0 and "b:said <request>" in echo and "w:cat" not in echo
    assert echo["slot:request"] == 1.0
    time = features(smartjarvis, "okay it's nine oh five now", "what time is it")
    assert "b:is <time>" in time and "w:nine" not in time and time["slot:time"] == 1.0
    # a number that is no clock time is a number, whatever its value
    number = features(smartjarvis, "order forty two shipped", "what time is it")
    assert "w:<number>" in number and "w:forty" not in number
    scores = smartjarvis.score("you said feed the cat", "echo feed the cat")
    assert echo["score:ECHO"] == scores["ECHO"]


def test_fitting_is_deterministic_and_learns_the_words_that_tell_intents_apart(smartjarvis):
    rows = [(features(smartjarvis, t, r), i, t) for t, r, i in [
        ("the sky looks grey outside", "how is the weather", "WEATHER_SIMPLE"),
        ("grey skies and drizzle", "how is the weather", "WEATHER_SIMPLE"),
        ("i lack that skill", "sing a song", "UNKNOWN"),
        ("that skill is not mine", "sing a song", "UNKNOWN"),
        ("howdy partner", "hello jarvis", "GREETING"),
        ("howdy friend", "hello jarvis", "GREETING"),
    ]]
    first = fit(rows, tuple(smartjarvis.intents), min_sentences=2)
    second = fit(rows, tuple(smartjarvis.intents), min_sentences=2)
    assert first.vocabulary == second.vocabulary and np.array_equal(first.weights, second.weights)
    assert "w:grey" in first.vocabulary and "w:partner" not in first.vocabulary  # one sentence only
    probabilities = first.probabilities(smartjarvis, "grey", "how is the weather")
    assert max(probabilities, key=probabilities.get) == "WEATHER_SIMPLE"
    probabilities = first.probabilities(smartjarvis, "skill", "sing a song")
    assert max(probabilities, key=probabilities.get) == "UNKNOWN"
    restored = IntentModel.from_json(json.loads(json.dumps(first.to_json())))
    assert restored.probabilities(smartjarvis, "howdy", "hi") == pytest.approx(
        first.probabilities(smartjarvis, "howdy", "hi"), abs=1e-5)


def test_the_shipped_model_is_what_the_build_command_builds(smartjarvis):
    """``python -m bench.judge_model --write`` rebuilds the shipped weights from the stored
    transcripts of the tuning and retired sets (never the current held-out set)."""
    from bench.judge import CURRENT_HELDOUT
    from bench.judge_model import RETIRED_SETS, TUNING_SETS, build

    shipped = IntentModel.builtin()
    assert CURRENT_HELDOUT not in shipped.trained_on.split(", ")
    rebuilt, _ = build((*TUNING_SETS, *RETIRED_SETS))
    assert rebuilt.trained_on == shipped.trained_on
    assert rebuilt.vocabulary.keys() == shipped.vocabulary.keys()
    for transcript, request_text, _ in UNJUDGED_BY_THE_RULES:
        assert rebuilt.probabilities(smartjarvis, transcript, request_text) == pytest.approx(
            shipped.probabilities(smartjarvis, transcript, request_text), abs=1e-3)
