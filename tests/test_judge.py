"""voiceharness.judge: the verdict on a turn, from what the reply says."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from voiceharness.judge import Expectation, check_reply_text, judge, needs_listening
from voiceharness.replies import AudioPayload, Metadata, ReplyAudio
from voiceharness.turns import TurnRecord


@dataclass
class Heard:
    intent: str | None
    transcript: str


def audio_of(samples: np.ndarray | None) -> ReplyAudio:
    audio = ReplyAudio()
    if samples is not None:
        audio.add(AudioPayload(samples.astype(np.int16).tobytes(), "pcm"), 1.0)
    return audio


SPEECH = np.full(8000, 3000)
SILENCE = np.zeros(8000)


def metadata(intent: str = "GREETING", reply_text: str = "Hello!") -> Metadata:
    return Metadata(intent, 0.9, "hello jarvis", {}, reply_text, None, None)


def verdict(audio, meta, expected="GREETING", **kwargs) -> TurnRecord:
    record = TurnRecord(intent=meta.intent if meta else "", intent_source="metadata" if meta else "", reply_ms=500.0)
    judge(record, audio, meta, Expectation(intent=expected, reply_check=kwargs.pop("reply_check", "")), **kwargs)
    return record


def test_metadata_with_the_expected_intent_and_audio_succeeds():
    record = verdict(audio_of(SPEECH), metadata())
    assert record.success and record.failure == "" and record.intent_source == "metadata"


@pytest.mark.parametrize("audio, meta, expected, failure", [
    (None, None, "GREETING", "no_intent"),
    (SPEECH, metadata("ECHO"), "GREETING", "wrong_intent"),
    (None, metadata(), "GREETING", "no_audio_tts"),
    (SILENCE, metadata(), "GREETING", "silent_reply"),
    (SILENCE, None, "GREETING", "silent_reply"),
])
def test_each_way_a_reply_can_fail_has_its_diagnosis(audio, meta, expected, failure):
    record = verdict(audio_of(audio), meta, expected)
    assert not record.success and record.failure == failure


def test_a_deadline_without_a_reply_says_how_long_it_waited():
    record = verdict(audio_of(None), None, ended_by="deadline", reply_timeout_ms=2000)
    assert record.failure == "no_intent" and "2000 ms" in record.failure_detail


def test_a_reply_text_failing_the_reply_check_is_wrong_reply():
    record = verdict(audio_of(SPEECH), metadata("ECHO", "hello there"), "ECHO", reply_check="contains:hello world")
    assert record.failure == "wrong_reply" and "does not contain" in record.failure_detail
    assert verdict(audio_of(SPEECH), metadata("ECHO", "Hello, World!"), "ECHO",
                   reply_check="contains:hello world").success


def test_without_metadata_the_intent_is_what_was_heard():
    record = verdict(audio_of(SPEECH), None, heard=Heard("GREETING", "hello how can i help"))
    assert record.success and record.intent == "GREETING" and record.intent_source == "audio"
    assert record.intent_ms == record.reply_ms  # known once the reply's audio was in
    assert record.reply_transcript == "hello how can i help" and record.audio_intent == "GREETING"


def test_heard_another_intent_is_wrong_intent_and_nothing_classifiable_is_unjudged():
    assert verdict(audio_of(SPEECH), None, heard=Heard("TIME_NOW", "the time is ten")).failure == "wrong_intent"
    record = verdict(audio_of(SPEECH), None, heard=Heard(None, "mumble"))
    assert record.failure == "unjudged" and "mumble" in record.failure_detail


def test_a_reply_not_heard_is_answered_but_not_judged():
    record = verdict(audio_of(SPEECH), None, heard=None)
    assert record.success and record.intent == "" and record.intent_source == ""


def test_with_metadata_required_a_reply_without_it_has_no_intent():
    assert verdict(audio_of(SPEECH), None, metadata_only=True).failure == "no_intent"


def test_cross_checking_fails_a_reply_whose_audio_says_another_intent():
    record = verdict(audio_of(SPEECH), metadata("GREETING"), heard=Heard("WEATHER_SIMPLE", "the weather is"))
    assert record.failure == "reply_mismatch" and record.audio_intent == "WEATHER_SIMPLE"
    record = verdict(audio_of(SPEECH), metadata("GREETING"), heard=Heard(None, "?"))
    assert record.success  # the metadata is the source; an unclear cross-check does not fail the gateway


def test_a_failure_the_session_found_stands():
    record = TurnRecord(failure="recording_stopped", failure_detail="close code 1011")
    judge(record, audio_of(SPEECH), metadata(), Expectation(intent="GREETING"))
    assert record.failure == "recording_stopped" and not record.success


def test_the_scenarios_own_check_runs_last_on_the_subject():
    def no_echo(turn):
        return "too polite" if "Hello" in turn.reply_text else None

    record = TurnRecord(intent="GREETING", reply_text="Hello!")
    judge(record, audio_of(SPEECH), metadata(), Expectation(intent="GREETING", check=no_echo))
    assert record.failure == "check_failed" and record.failure_detail == "too polite"
    record = TurnRecord(intent="GREETING")
    judge(record, audio_of(SPEECH), metadata(), Expectation(intent="GREETING", check=lambda turn: False))
    assert record.failure == "check_failed"


def test_listening_is_needed_only_where_it_decides_or_cross_checks():
    assert needs_listening(audio_of(SPEECH), None, cross_check=False)
    assert not needs_listening(audio_of(SPEECH), metadata(), cross_check=False)
    assert needs_listening(audio_of(SPEECH), metadata(), cross_check=True)
    assert not needs_listening(audio_of(SILENCE), None, cross_check=True)
    assert not needs_listening(audio_of(None), None, cross_check=True)
    assert not needs_listening(audio_of(SPEECH), None, cross_check=False, metadata_only=True)


@pytest.mark.parametrize("check, text, ok", [
    ("contains:hello world", "Well, hello world!", True),
    ("contains:hello world", "world hello", False),
    ("any:sunny|rain", "It will rain.", True),
    ("regex:\\d{1,2}:\\d\\d", "It is 9:05 AM.", True),
    ("nonempty", "", False),
    ("", "anything", True),
])
def test_the_reply_check_language(check, text, ok):
    assert (check_reply_text(check, text) is None) is ok


def test_nan_timings_are_left_alone():
    record = verdict(audio_of(SPEECH), metadata())
    assert math.isnan(record.roundtrip_ms)  # the judge sets no timing of its own, bar intent_ms by ear
