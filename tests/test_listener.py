"""voiceharness.listener and voiceharness.expectations: real pocketsphinx on real synthesized replies."""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
from dataclasses import replace

import numpy as np
import pytest
import soundfile
from scipy.signal import resample_poly

from voiceharness.errors import UsageError
from voiceharness.expectations import load_expectations, normalize_words, request_words
from voiceharness.expectations.learned import IntentModel
from voiceharness.listener import HYBRID_MODEL_AGREES, ReplyListener, grammar_way_in, hybrid_takes_grammar


# The published SmartJARVIS gateway's replies: every template of its NLG (as the reference
# gateway's smartjarvis dialect speaks them), filled in.
def _smartjarvis_replies() -> list[tuple[str, str, str]]:
    import datetime as dt

    from gateway.nlg import reply_text, sentences

    requests = {"GREETING": "hello jarvis", "TIME_NOW": "what time is it", "WEATHER_SIMPLE": "how is the weather",
                "UNKNOWN": "play some music"}
    echoes = [("echo hello world", "hello world"), ("echo open the door", "open the door"),
              ("repeat testing one two three", "testing one two three"), ("say good morning", "good morning")]
    times = [dt.datetime(2026, 1, 1, h, m) for h, m in ((9, 9), (16, 30), (0, 5), (11, 45), (19, 0))]
    replies = []
    for intent in ("GREETING", "ECHO", "TIME_NOW", "WEATHER_SIMPLE", "UNKNOWN"):
        for variant in range(len(sentences(intent, "smartjarvis"))):
            if intent == "ECHO":
                request, words = echoes[variant]
                replies.append((intent, reply_text(intent, {"words": words}, style="smartjarvis", variant=variant),
                                request))
            else:
                replies.append((intent, reply_text(intent, {}, times[variant], style="smartjarvis", variant=variant),
                                requests[intent]))
    return replies


SMARTJARVIS_REPLIES = _smartjarvis_replies()
# The reference gateway's own replies (gateway/synthesizer.py reply_text).
REFERENCE_REPLIES = [
    ("GREETING", "Hello! I am Jarvis. How can I help you?", "hello jarvis"),
    ("ECHO", "hello world", "echo hello world"),
    ("TIME_NOW", "It is 4:30 PM.", "what time is it"),
    ("WEATHER_SIMPLE", "Today it is sunny with a few clouds, and the temperature is twenty one degrees.",
     "how is the weather"),
    ("UNKNOWN", "Sorry, I did not understand. Please try again.", "order a pizza"),
]


def espeak(text: str, voice: str = "en-us", rate_wpm: int = 170) -> tuple[np.ndarray, int]:
    """espeak-ng's own output (22,050 Hz) as int16 samples."""
    done = subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate_wpm), "--stdout", "--", text],
                          capture_output=True, check=True)
    return soundfile.read(io.BytesIO(done.stdout), dtype="int16")


def festival(text: str, voice: str = "kal_diphone") -> tuple[np.ndarray, int]:
    """festival's text2wave (the held-out voice) as int16 samples."""
    # text2wave fixes up its WAV header by seeking back, which a pipe cannot: write a file.
    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/reply.wav"
        subprocess.run(["text2wave", "-eval", f"(voice_{voice})", "-o", path],
                       input=text.encode(), capture_output=True, check=True)
        return soundfile.read(path, dtype="int16")


@pytest.fixture(scope="module")
def smartjarvis() -> ReplyListener:
    return ReplyListener("smartjarvis")


@pytest.fixture(scope="module")
def reference() -> ReplyListener:
    return ReplyListener("reference")


# -- expectations: the file format and the text scoring --------------------------------------


def test_both_shipped_expectations_load_with_every_intent():
    for name in ("smartjarvis", "reference"):
        expectations = load_expectations(name)
        assert set(expectations.intents) == {"GREETING", "ECHO", "TIME_NOW", "WEATHER_SIMPLE", "UNKNOWN"}


def test_contractions_and_punctuation_are_normalized():
    assert normalize_words("It's 9 o'clock. I didn't catch THAT!") == [
        "it", "is", "nine", "o'clock", "i", "did", "not", "catch", "that"]
    assert normalize_words("I'm sure you can't") == ["i", "am", "sure", "you", "can", "not"]


def test_the_request_words_follow_the_command_word():
    commands = (("echo",), ("tell", "me"))
    assert request_words("echo hello world", commands) == ["hello", "world"]
    assert request_words("jarvis tell me a story", commands) == ["a", "story"]
    assert request_words("hello jarvis", commands) == []  # no echo request: nothing expected back
    assert request_words("hello jarvis", ()) == ["hello", "jarvis"]


@pytest.mark.parametrize(
    ("transcript", "request_text", "intent"),
    [
        ("you said hello world", "echo hello world", "ECHO"),
        ("hi there how can i help", "hi jarvis", "GREETING"),
        ("the time is nine oh five a m", "what time is it", "TIME_NOW"),
        ("it is ten thirty right now", "what time is it", "TIME_NOW"),
        ("sorry weather information is not available", "how is the weather", "WEATHER_SIMPLE"),
        ("i did not quite catch that", "order a pizza", "UNKNOWN"),
        ("the cat sat on the mat", "order a pizza", None),
        ("", "hello", None),
    ],
)
def test_transcripts_are_classified_by_the_smartjarvis_expectations(transcript, request_text, intent):
    expectations = load_expectations("smartjarvis")
    assert expectations.classify(expectations.score(transcript, request_text)) == intent


def test_a_reference_echo_is_the_request_words_and_nothing_else():
    expectations = load_expectations("reference")
    assert expectations.classify(expectations.score("good morning", "echo good morning")) == "ECHO"
    # The same words are no echo of another request.
    assert expectations.classify(expectations.score("good morning", "echo open the door")) != "ECHO"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "not valid JSON (line 1"),
        ("[]", "top level: must be a JSON object"),
        ('{"intents": {}}', "intents: missing or empty"),
        ('{"intents": {"greeting": {"phrases": ["hi"]}}}', "intents.greeting: intent names are upper case"),
        ('{"intents": {"GREETING": {"phrase": ["hi"]}}}', "intents.GREETING.phrase: unknown key"),
        ('{"intents": {"GREETING": {"phrases": "hi"}}}', "intents.GREETING.phrases: must be a non-empty list"),
        ('{"intents": {"GREETING": {"phrases": ["hi", 3]}}}', "intents.GREETING.phrases[1]: must be a non-empty string"),
        ('{"intents": {"TIME_NOW": {"phrases": ["it is {clock}"]}}}', "unknown slot {clock}"),
        ('{"intents": {"TIME_NOW": {"phrases": ["it is 9 am"]}}}', "write numbers as words"),
        ('{"intents": {"ECHO": {"phrases": ["{words}"]}}}', "says nothing that can be checked"),
        ('{"intents": {"ECHO": {"keywords": ["{request}"]}}}', "slots belong in phrases"),
        ('{"intents": {"ECHO": {"phrases": ["hi"]}}, "extra": 1}', "extra: unknown key"),
    ],
)
def test_a_bad_expectations_file_names_the_file_the_key_and_the_fix(tmp_path, content, fragment):
    path = tmp_path / "mine.json"
    path.write_text(content)
    with pytest.raises(UsageError) as raised:
        load_expectations(path)
    assert str(path) in str(raised.value)
    assert fragment in str(raised.value)


def test_a_missing_expectations_file_says_what_to_give(tmp_path):
    with pytest.raises(UsageError, match="no such file.*smartjarvis, reference"):
        load_expectations(tmp_path / "nope.json")
    with pytest.raises(UsageError, match="no such file"):
        ReplyListener(str(tmp_path / "nope.json"))


def test_a_users_own_file_is_used(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"intents": {"GREETING": {"keywords": ["howdy"]}, "UNKNOWN": {"phrases": ["say again"]}}}))
    expectations = load_expectations(str(path))
    assert expectations.classify(expectations.score("well howdy partner")) == "GREETING"


# -- the listener on real audio ---------------------------------------------------------------


def test_every_published_smartjarvis_reply_is_heard_as_its_intent(smartjarvis):
    """The reference gateway's smartjarvis dialect speaks these (espeak-ng, en-us, 22,050 Hz): all right."""
    heard = [smartjarvis.hear(*espeak(text), request_text=request) for _, text, request in SMARTJARVIS_REPLIES]
    wrong = [(intent, text, h.intent, h.transcript) for (intent, text, _), h in zip(SMARTJARVIS_REPLIES, heard,
                                                                                     strict=True) if h.intent != intent]
    assert not wrong
    assert all(h.decode_ms > 0 and h.expectations == "smartjarvis (built in)" for h in heard)


def _clean_requests() -> list[str]:
    """The request of every clean utterance of the bundled corpus, each once."""
    from audio_corpus import load_corpus

    return sorted({u.text for u in load_corpus(select="kind:clean")})


@pytest.fixture(scope="module")
def smartjarvis_gateway_at_7_pm():
    from gateway.pipeline import VoicePipeline

    return VoicePipeline(style="smartjarvis", reply_sample_rate_hz=22050, fixed_clock="19:00")


@pytest.mark.parametrize("request_text", _clean_requests())
def test_every_reply_the_smartjarvis_gateway_gives_a_clean_utterance_at_7_pm_is_heard_right(
        smartjarvis, smartjarvis_gateway_at_7_pm, request_text):
    """tests/test_locust_dialects.py streams the corpus's clean utterances to the smartjarvis dialect
    with its clock at 7 PM and expects every turn judged right. Which utterance a user draws and
    which template the gateway picks are chance: here every utterance with this request goes
    through the gateway's recognizer and NLU, and every template of the intent it understood is
    spoken in the gateway's voice and heard, so that the live test does not depend on what it
    draws. ("tell me the time" is an echo's command and a clock request at once: two of its
    replies were unjudged after round 9, and the live test failed one run in a few dozen.)"""
    import datetime as dt

    from audio_corpus import load_corpus
    from gateway.nlg import reply_text, sentences
    from gateway.nlu import understand

    gateway, seven_pm = smartjarvis_gateway_at_7_pm, dt.datetime(2026, 1, 1, 19, 0)
    utterances = [u for u in load_corpus(select="kind:clean") if u.text == request_text]
    replies = set()
    for utterance in utterances:
        samples, rate_hz = soundfile.read(utterance.path, dtype="int16")
        meaning = understand(gateway.recognizer.recognize(samples.tobytes(), rate_hz).transcript)
        assert meaning.intent == utterance.expected_intent, (utterance.id, meaning)
        replies |= {reply_text(meaning.intent, meaning.slots, seven_pm, style="smartjarvis", variant=v)
                    for v in range(len(sentences(meaning.intent, "smartjarvis")))}
    intent = utterances[0].expected_intent
    heard = {text: smartjarvis.hear(gateway.synthesizer.speak(text), 22050, request_text=request_text)
             for text in sorted(replies)}
    assert not [(text, h.intent, h.decided_by, h.transcript) for text, h in heard.items() if h.intent != intent]


# Clock times none of which is in the learned model's clock-time material (bench/judge_sets/clock.tsv:
# every 13 minutes from 00:03): whole hours, minutes "oh" five, at each hour of the day in turn.
CLOCK_TIMES_NOT_TRAINED_ON = ("00:00", "01:07", "03:19", "05:30", "07:41", "09:05", "11:59", "13:12", "15:48",
                              "17:01", "19:26", "21:33", "23:09")


@pytest.mark.parametrize("clock", CLOCK_TIMES_NOT_TRAINED_ON)
def test_the_smartjarvis_gateway_telling_the_time_is_heard_right_at_any_time_of_day(smartjarvis, clock):
    """A live run tells the time it is: the test above pins the gateway's clock at 7 PM, and at
    other times 14 % of these replies were left unjudged and 1.6 % judged another intent
    (espeak-ng reads "6:07" "six zero seven", and the language model hears its clock times as
    other words). Each of the five templates, at a time of day the model did not read."""
    import datetime as dt

    from gateway.nlg import reply_text, sentences
    from gateway.synthesizer import Synthesizer

    voice = Synthesizer(sample_rate_hz=22050)  # the gateway's (gateway/pipeline.py)
    hours, minutes = map(int, clock.split(":"))
    when = dt.datetime(2026, 1, 1, hours, minutes)
    replies = [reply_text("TIME_NOW", {}, when, style="smartjarvis", variant=v)
               for v in range(len(sentences("TIME_NOW", "smartjarvis")))]
    heard = {text: smartjarvis.hear(voice.speak(text), 22050, request_text="what time is it") for text in replies}
    assert not [(text, h.intent, h.decided_by, h.transcript) for text, h in heard.items() if h.intent != "TIME_NOW"]


@pytest.mark.parametrize(("intent", "text", "request_text"), REFERENCE_REPLIES)
def test_reference_replies_are_heard_as_their_intent(reference, intent, text, request_text):
    heard = reference.hear(*espeak(text), request_text=request_text)
    assert heard.intent == intent, heard


def test_a_reference_echo_is_judged_by_the_words_the_harness_said(reference):
    samples, rate_hz = espeak("open the door")
    assert reference.hear(samples, rate_hz, request_text="echo open the door").intent == "ECHO"
    assert reference.hear(samples, rate_hz, request_text="echo happy birthday").intent != "ECHO"


def test_any_sample_rate_and_sample_format_give_the_same_intent(reference):
    samples, rate_hz = espeak("Sorry, I did not understand. Please try again.")
    as_16k = resample_poly(samples.astype(np.float64), 320, 441).astype(np.int16)
    as_48k = resample_poly(samples.astype(np.float64), 320, 147).astype(np.int16)
    heard = [
        reference.hear(samples, rate_hz),
        reference.hear(samples.tobytes(), rate_hz),
        reference.hear(samples.astype(np.float32) / 32768, rate_hz),
        reference.hear(as_16k, 16000),
        reference.hear(as_48k, 48000),
    ]
    assert [h.intent for h in heard] == ["UNKNOWN"] * 5


def test_silence_and_noise_are_not_classified(smartjarvis):
    silent = smartjarvis.hear(np.zeros(22050 * 2, dtype=np.int16), 22050)
    assert silent.intent is None and silent.transcript == ""
    noise = np.random.default_rng(3).normal(0, 3000, 22050 * 2).astype(np.int16)
    assert smartjarvis.hear(noise, 22050).intent is None
    assert smartjarvis.hear(b"", 22050).intent is None


def test_festival_held_out_voice_is_heard(reference):
    """The voice the judge was not tuned on (more in docs/reply-judge.md)."""
    heard = reference.hear(*festival("Sorry, I did not understand. Please try again."), request_text="order a pizza")
    assert heard.intent == "UNKNOWN", heard


def test_a_bad_sample_rate_is_a_usage_error(reference):
    with pytest.raises(UsageError, match="sample rate 0 Hz"):
        reference.hear(np.zeros(100, dtype=np.int16), 0)


def flite(text: str, voice: str = "slt") -> tuple[np.ndarray, int]:
    """flite's voice (held out: never tuned on) as int16 samples."""
    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/reply.wav"
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", path], capture_output=True, check=True)
        return soundfile.read(path, dtype="int16")


def test_the_language_models_alternatives_decide_when_its_best_transcript_cannot():
    """flite's slt says "Sorry, I can't do that."; the language model's best path is "sorry i can
    do that" (nothing a person would call a refusal), several of its runner-ups hear "can't"."""
    samples, rate_hz = flite("Sorry, I can't do that.")
    lm = ReplyListener("smartjarvis", method="lm")
    heard = lm.hear(samples, rate_hz, request_text="call a plumber")
    assert heard.intent == "UNKNOWN" and heard.decided_by == "lm alternatives", heard
    best = lm.expectations.judge(lm.transcribe(lm_samples(samples, rate_hz)), "call a plumber")
    assert best.intent is None  # the best transcript alone is unjudged
    hybrid = ReplyListener("smartjarvis").hear(samples, rate_hz, request_text="call a plumber")
    assert (hybrid.intent, hybrid.decided_by) == ("UNKNOWN", "lm alternatives"), hybrid


def lm_samples(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    """What hear() decodes: 16 kHz, the speech with its margins, dithered."""
    from voiceharness.listener import _DITHER_STD, _speech_only, to_listener_samples

    speech = _speech_only(to_listener_samples(samples, rate_hz))
    return speech + np.random.default_rng(0).normal(0.0, _DITHER_STD, speech.size).astype(np.float32)


def test_alternatives_that_disagree_or_are_too_few_decide_nothing():
    from voiceharness.listener import judge_alternatives

    expectations = load_expectations("smartjarvis")
    refusals = ["sorry i can't do that", "sorry i can not do that", "sorry i cannot do that"]
    agreed = judge_alternatives(expectations, ["sorry i can do that", *refusals], "call a plumber", agree=3)
    assert agreed is not None and agreed[0].intent == "UNKNOWN" and agreed[1] == "sorry i can't do that"
    # too few agree
    assert judge_alternatives(expectations, refusals[:2], "call a plumber", agree=3) is None
    # one dissents: the weather heard in another alternative
    assert judge_alternatives(expectations, [*refusals, "the weather is not available"], "call a plumber",
                              agree=3) is None


@pytest.mark.parametrize(("request_text", "alternative", "intent", "stands"), [
    # Alternatives the language model agreed on in stored runs (heldout11, heldout12): refusals
    # offering the forecast or the time, heard as a report of them.
    ("call the office", "sorry i can't place calls what you like to have the time and stuff", "TIME_NOW", False),
    ("set an alarm for six thirty", "sorry i can't set alarms at six thirty or any other time", "TIME_NOW", False),
    ("what's the weather like", "weather information is not available at the moment is there something else",
     "WEATHER_SIMPLE", True),
    ("call a plumber", "sorry i can't do that", "UNKNOWN", True),
])
def test_the_alternatives_verdict_stands_only_when_the_learned_model_agrees(request_text, alternative, intent, stands):
    """Round 12: as the rules and the model decided more, what was left to the alternatives was more
    often wrong (heldout12: 8 right / 14 wrong); the learned model must agree with their verdict."""
    from voiceharness.listener import (
        ALTERNATIVES_MODEL_AGREES,
        alternatives_verdict_stands,
        judge_alternatives,
    )

    expectations = load_expectations("smartjarvis")
    agreed = judge_alternatives(expectations, [alternative] * 3, request_text)
    assert agreed is not None and agreed[0].intent == intent
    probability = IntentModel.builtin().probabilities(expectations, alternative, request_text)[intent]
    assert (probability >= ALTERNATIVES_MODEL_AGREES) is stands
    assert alternatives_verdict_stands(expectations, *agreed, request_text) is stands


def test_the_learned_model_decides_when_the_rules_and_the_alternatives_cannot():
    """flite's slt says "No idea about the weather, I'm afraid."; the language model hears it word
    for word, but "no idea" (a request not understood) and "weather" leave the rules unjudged,
    and no alternatives agree. The learned model hears a weather reply; without it, the lm method
    leaves the reply unjudged (the hybrid's grammar too)."""
    samples, rate_hz = flite("No idea about the weather, I'm afraid.")
    for method in ("lm", "hybrid"):
        heard = ReplyListener("smartjarvis", method=method).hear(samples, rate_hz, request_text="how is the weather")
        assert (heard.intent, heard.decided_by) == ("WEATHER_SIMPLE", "model"), heard
        assert heard.score >= 0.9 and heard.scores["WEATHER_SIMPLE"] < 1.0
        without = ReplyListener("smartjarvis", method=method, learned_model=False).hear(
            samples, rate_hz, request_text="how is the weather")
        assert without.intent is None and without.decided_by != "model", without
    grammar = ReplyListener("smartjarvis", method="grammar").hear(samples, rate_hz, request_text="how is the weather")
    assert grammar.decided_by == "grammar"  # the grammar's forced transcripts are not the model's to judge


@pytest.mark.parametrize(("lm_heard", "grammar_heard", "request_text", "takes"), [
    # A refusal (heldout6, festival's kal) the language model heard word for word; no intent's
    # words are in it, and the grammar forced it into a clock-time template.
    ("i'm still learning and that's beyond what i know", "it's eleven ten at the moment", "book a flight", False),
    # A published template in espeak-ng's voice ("The current time is 9:09 AM"), which the language
    # model turns into other words: the grammar heard it, and the learned model agrees.
    ("the tour with like minds you like em", "the current time is nine thirty", "what time is it", True),
])
def test_the_hybrid_takes_the_grammar_where_the_language_model_heard_nothing_only_if_the_learned_model_agrees(
        lm_heard, grammar_heard, request_text, takes):
    expectations = load_expectations("smartjarvis")
    lm, grammar = expectations.judge(lm_heard, request_text), expectations.judge(grammar_heard, request_text)
    assert lm.intent is None and lm.score < 0.3 and grammar.intent == "TIME_NOW" and grammar.score >= 0.9
    probabilities = IntentModel.builtin().probabilities(expectations, lm_heard, request_text, lm.scores)
    assert (probabilities["TIME_NOW"] >= HYBRID_MODEL_AGREES) is takes
    assert grammar_way_in(lm, grammar) == "nothing"
    assert hybrid_takes_grammar(lm, grammar, probabilities) is takes
    assert hybrid_takes_grammar(lm, grammar, None)  # without a model: the grammar's, as before round 6


def test_a_faint_lean_of_the_language_model_does_not_let_the_grammar_decide_without_the_learned_model():
    """A refusal (heldout7) the language model heard almost word for word: its rules lean to
    TIME_NOW ("that one" is a lone number), and the grammar forced it into a clock-time template.
    Before round 10 agreeing with any lean let the grammar decide; now the learned model must agree
    too. (Until round 13 the example was "switching lights on or off is beyond my reach", which the
    rules now judge a refusal themselves.)"""
    expectations = load_expectations("smartjarvis")
    request, heard = "what's the capital of peru", "i'm sorry i don't know that one"
    lm = expectations.judge(heard, request)
    grammar = expectations.judge("it's two eighteen right now", request)
    assert lm.intent is None and max(lm.scores, key=lm.scores.get) == "TIME_NOW" and grammar.intent == "TIME_NOW"
    assert grammar_way_in(lm, grammar) == "lean"
    assert hybrid_takes_grammar(lm, grammar, None)  # the lean alone, as before round 10
    probabilities = IntentModel.builtin().probabilities(expectations, heard, request, lm.scores)
    assert probabilities["TIME_NOW"] < HYBRID_MODEL_AGREES
    assert not hybrid_takes_grammar(lm, grammar, probabilities)


def test_the_grammar_does_not_decide_a_reply_whose_language_model_transcript_names_two_subjects():
    """A weather report (heldout8) the language model heard nearly whole names the rain and a clock
    time: the rules leave it unjudged, as a reply naming two intents must be. The grammar forced it
    into a clock-time template, agreeing with the lean, and before round 11 it would have decided
    TIME_NOW. (Until round 14 the example was heldout9's "expect like rain after three pm", whose
    clock time the rules now read as when the rain comes.)"""
    from voiceharness.expectations.learned import names_two_subjects

    expectations = load_expectations("smartjarvis")
    request = "what's the weather like today"
    heard = ("all right right now it's fifteen degrees celsius and cloudy but the sun should break through around noon "
             "pushing the high apt to twenty one and there's only a ten percent chance of rain it for the evening")
    lm, grammar = expectations.judge(heard, request), expectations.judge("it's ten o'clock right now", request)
    assert lm.intent is None and grammar.intent == "TIME_NOW"
    assert grammar_way_in(lm, grammar) == "lean"  # as before round 11
    two_subjects = names_two_subjects(expectations, heard, request)
    assert two_subjects
    assert grammar_way_in(lm, grammar, lm_names_two_subjects=two_subjects) is None
    assert not hybrid_takes_grammar(lm, grammar, None, lm_names_two_subjects=two_subjects)


def test_the_subjectless_discount_does_not_make_the_language_model_have_heard_nothing():
    """"Yes, I'm here." heard word for word (heldout9): the greeting's words without a greeting
    keyword score less for the greeting (which intent), but the language model heard them (how
    much): the grammar's forced clock time does not get its "heard next to nothing" branch."""
    expectations = load_expectations("smartjarvis")
    lm = expectations.judge("yes i'm here", "hey jarvis")
    grammar = expectations.judge("it's ten a m at the moment", "hey jarvis")
    assert lm.intent is None and lm.score < 0.3 <= lm.heard_score
    assert grammar.intent == "TIME_NOW" and grammar.score >= 0.9
    assert grammar_way_in(lm, grammar) is None and not hybrid_takes_grammar(lm, grammar, None)
    assert grammar_way_in(replace(lm, heard_score=lm.score), grammar) == "nothing"  # as round 8 read it
