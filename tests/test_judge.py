"""voiceharness.judge: the verdict on a turn — every failure code chosen in one place."""

from __future__ import annotations

import numpy as np
import pytest

from voiceharness import judge
from voiceharness.errors import ConnectionFailed
from voiceharness.judge import Expectation, Verdict, judge_turn, needs_listening
from voiceharness.listener import Heard
from voiceharness.protocol import Abandon, Metadata, ReplyAudio, TurnEnded
from voiceharness.turn import ReplyRecording
from voiceharness.turns import TurnContext, TurnRecord, TurnTimings


def audio_of(samples: np.ndarray | None) -> ReplyRecording:
    audio = ReplyRecording()
    if samples is not None:
        audio.add(ReplyAudio(1.0, samples.astype(np.int16).tobytes(), "pcm"))
    return audio


SPEECH = np.full(8000, 3000)
SILENCE = np.zeros(8000)
REPLY_OVER = TurnEnded(2.0, "reply_end", saw_metadata=True)


def metadata(intent: str = "GREETING", reply_text: str = "Hello!") -> Metadata:
    return Metadata(intent, 0.9, "hello jarvis", {}, reply_text, None, None)


def verdict(audio, meta, expected="GREETING", ended: TurnEnded = REPLY_OVER, **kwargs) -> Verdict:
    expectation = Expectation(intent=expected, reply_check=kwargs.pop("reply_check", ""))
    return judge_turn(ended, audio, meta, expectation, **kwargs)


def test_metadata_with_the_expected_intent_and_audio_succeeds():
    result = verdict(audio_of(SPEECH), metadata())
    assert result.success and result.failure == "" and result.intent_source == "metadata"
    assert (result.intent, result.confidence, result.transcript, result.reply_text) == (
        "GREETING", 0.9, "hello jarvis", "Hello!")


@pytest.mark.parametrize("audio, meta, expected, failure", [
    (None, None, "GREETING", "no_intent"),
    (SPEECH, metadata("ECHO"), "GREETING", "wrong_intent"),
    (None, metadata(), "GREETING", "no_audio_tts"),
    (SILENCE, metadata(), "GREETING", "silent_reply"),
    (SILENCE, None, "GREETING", "silent_reply"),
])
def test_each_way_a_reply_can_fail_has_its_diagnosis(audio, meta, expected, failure):
    result = verdict(audio_of(audio), meta, expected)
    assert not result.success and result.failure == failure


def test_a_deadline_without_a_reply_says_how_long_it_waited():
    result = verdict(audio_of(None), None, ended=TurnEnded(12.0, "deadline"), reply_timeout_ms=2000)
    assert result.failure == "no_intent" and "2000 ms" in result.failure_detail


def test_a_reply_text_failing_the_reply_check_is_wrong_reply():
    result = verdict(audio_of(SPEECH), metadata("ECHO", "hello there"), "ECHO", reply_check="contains:hello world")
    assert result.failure == "wrong_reply" and "does not contain" in result.failure_detail
    assert verdict(audio_of(SPEECH), metadata("ECHO", "Hello, World!"), "ECHO",
                   reply_check="contains:hello world").success


def test_without_metadata_the_intent_is_what_was_heard():
    result = verdict(audio_of(SPEECH), None, heard=Heard("GREETING", "hello how can i help"))
    assert result.success and result.intent == "GREETING" and result.intent_source == "audio"
    assert result.reply_transcript == "hello how can i help" and result.audio_intent == "GREETING"
    # known once the reply's audio was in: the record's intent time is its reply time
    record = TurnRecord.build(TurnContext(), TurnTimings(reply_ms=500.0), result)
    assert record.intent_ms == 500.0


def test_heard_another_intent_is_wrong_intent_and_nothing_classifiable_is_unjudged():
    assert verdict(audio_of(SPEECH), None, heard=Heard("TIME_NOW", "the time is ten")).failure == "wrong_intent"
    result = verdict(audio_of(SPEECH), None, heard=Heard(None, "mumble"))
    assert result.failure == "unjudged" and "mumble" in result.failure_detail


def test_a_reply_not_heard_is_answered_but_not_judged():
    result = verdict(audio_of(SPEECH), None, heard=None)
    assert result.success and result.intent == "" and result.intent_source == ""


def test_with_metadata_required_a_reply_without_it_has_no_intent():
    assert verdict(audio_of(SPEECH), None, metadata_only=True).failure == "no_intent"


def test_cross_checking_fails_a_reply_whose_audio_says_another_intent():
    result = verdict(audio_of(SPEECH), metadata("GREETING"), heard=Heard("WEATHER_SIMPLE", "the weather is"))
    assert result.failure == "reply_mismatch" and result.audio_intent == "WEATHER_SIMPLE"
    result = verdict(audio_of(SPEECH), metadata("GREETING"), heard=Heard(None, "?"))
    assert result.success  # the metadata is the source; an unclear cross-check does not fail the gateway


@pytest.mark.parametrize("ended, failure, detail", [
    (TurnEnded(2.0, "abandoned", abandoned=Abandon.DEAD_LINK, abandon_detail="dead link: nothing for 6.1 s"),
     "dead_link", "dead link: nothing for 6.1 s"),
    (TurnEnded(2.0, "abandoned", abandoned=Abandon.RUN_STOPPED, abandon_detail="the run ended"),
     "run_stopped", "the run ended"),
    (TurnEnded(2.0, "connection_lost", close_code=1011, lost_reason="fault", lost_while="speaking"),
     "recording_stopped", "close code 1011: fault while speaking"),
    (TurnEnded(2.0, "connection_lost", lost_while="receiving reply"),
     "incomplete_reply", "reply cut after 16000 audio bytes; connection dropped"),
    (TurnEnded(2.0, "wav", wav_truncated=True), "incomplete_reply", "the reply's WAV file was cut short"),
    (TurnEnded(2.0, "protocol", saw_metadata=True, fault="text frame that is not a JSON object"),
     "gateway_protocol", "text frame that is not a JSON object"),
])
def test_how_the_turn_ended_decides_first(ended, failure, detail):
    result = verdict(audio_of(SPEECH), metadata(), ended=ended)
    assert not result.success and result.failure == failure and detail in result.failure_detail
    assert result.intent == "GREETING"  # what the gateway said is kept with the failure


def test_a_reply_over_before_the_connection_dropped_stands():
    ended = TurnEnded(2.0, "reply_end", saw_metadata=True, close_code=1000, lost_while="reply over")
    assert verdict(audio_of(SPEECH), metadata(), ended=ended).success


def test_the_scenarios_own_check_passes_fails_or_says_why():
    def no_echo(turn):
        return "too polite" if "Hello" in turn else None

    assert judge.scenario_check(no_echo, "Hello!") == Verdict(False, "check_failed", "too polite")
    assert judge.scenario_check(no_echo, "Hi").success
    assert judge.scenario_check(lambda turn: False, None).failure == "check_failed"
    assert judge.scenario_check(lambda turn: True, None).success


def test_turns_that_never_reached_the_gateway():
    failure = ConnectionFailed("ws://127.0.0.1:9: refused", "connection_refused")
    assert judge.connection_failed(failure.diagnosis, str(failure)) == Verdict(
        False, "connection_refused", "ws://127.0.0.1:9: refused")
    gave_up = judge.connection_failed("connection_refused", "refused", failed_attempts=6, gave_up=True)
    assert gave_up.failure == "connection_gave_up" and gave_up.failure_detail.startswith("6 failed attempts")
    assert judge.interrupted(KeyError("x"), "while connecting").failure == "harness_error"
    assert judge.interrupted(KeyboardInterrupt(), "while connecting").failure == "run_stopped"
    assert judge.interrupted_while_judging(ZeroDivisionError("a bug")).failure_detail == \
        "while judging: ZeroDivisionError: a bug"


def test_listening_is_needed_only_where_it_decides_or_cross_checks():
    assert needs_listening(audio_of(SPEECH), None, REPLY_OVER, cross_check=False)
    assert not needs_listening(audio_of(SPEECH), metadata(), REPLY_OVER, cross_check=False)
    assert needs_listening(audio_of(SPEECH), metadata(), REPLY_OVER, cross_check=True)
    assert not needs_listening(audio_of(SILENCE), None, REPLY_OVER, cross_check=True)
    assert not needs_listening(audio_of(None), None, REPLY_OVER, cross_check=True)
    assert not needs_listening(audio_of(SPEECH), None, REPLY_OVER, cross_check=False, metadata_only=True)
    assert not needs_listening(audio_of(SPEECH), None, TurnEnded(2.0, "wav", wav_truncated=True), cross_check=True)
    lost = TurnEnded(2.0, "connection_lost", lost_while="receiving reply")
    assert not needs_listening(audio_of(SPEECH), None, lost, cross_check=True)
