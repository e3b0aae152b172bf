"""voiceharness.calibrate: expectations learned from a gateway's replies, and whether they separate the intents.

The learning is a pure function of the replies heard (tested here on transcripts); the command
against the real reference gateway, in both dialects, is tested end to end at the bottom.
"""

from __future__ import annotations

from voiceharness.calibrate import HeardReply, calibrate, report, write_expectations
from voiceharness.expectations import load_expectations

COMMANDS = ["echo", "repeat", "say", "tell me"]
REPLIES = [
    HeardReply("GREETING", "hello jarvis", "howdy partner what can i get you"),
    HeardReply("GREETING", "hi jarvis", "howdy friend what can i get you"),
    HeardReply("ECHO", "echo open the door", "you asked me to say open the door"),
    HeardReply("ECHO", "echo hello world", "you asked me to say hello world"),
    HeardReply("TIME_NOW", "what time is it", "my watch says nine oh five a m"),
    HeardReply("TIME_NOW", "what time is it", "my watch says four thirty p m"),
    HeardReply("WEATHER_SIMPLE", "how is the weather", "no forecast for you today"),
    HeardReply("WEATHER_SIMPLE", "how is the weather", "no forecast for you today"),
    HeardReply("UNKNOWN", "play some music", "pardon me say again"),
    HeardReply("UNKNOWN", "order a pizza", "pardon me say again"),
]


def test_phrases_take_slots_for_the_time_and_the_request_said_back():
    data = calibrate(REPLIES, command_words=COMMANDS).data
    assert data["intents"]["TIME_NOW"]["phrases"] == ["my watch says {time}"]
    assert data["intents"]["ECHO"]["phrases"] == ["you asked me to say {request}"]
    assert set(data["intents"]["GREETING"]["phrases"]) == {"howdy partner what can i get you",
                                                           "howdy friend what can i get you"}
    assert "howdy" in data["intents"]["GREETING"]["keywords"]
    assert "forecast" in data["intents"]["WEATHER_SIMPLE"]["keywords"]
    assert data["command_words"] == COMMANDS


def test_distinct_replies_are_told_apart_and_the_file_judges_new_wordings(tmp_path):
    calibration = calibrate(REPLIES, command_words=COMMANDS)
    assert calibration.separated, calibration.alike
    for intent, row in calibration.confusion.items():
        assert row == {intent: 2}, (intent, row)
    path = write_expectations(calibration, tmp_path / "learned.json")
    expectations = load_expectations(path)
    assert expectations.judge("my watch says 11:45 PM", "what time is it").intent == "TIME_NOW"
    assert expectations.judge("you asked me to say turn on the radio", "repeat turn on the radio").intent == "ECHO"
    assert "Every intent's replies were told apart." in report(calibration)


def test_two_intents_answering_with_the_same_sentence_are_reported_inseparable():
    same = [*REPLIES, HeardReply("WEATHER_SIMPLE", "what's the weather like", "pardon me say again")]
    calibration = calibrate(same, command_words=COMMANDS)
    assert not calibration.separated
    assert [(a, b) for a, b, _ in calibration.alike] == [("UNKNOWN", "WEATHER_SIMPLE")]
    text = report(calibration)
    assert "WARNING: UNKNOWN and WEATHER_SIMPLE answer alike: both answer 'pardon me say again'" in text


def test_a_reply_that_is_the_request_words_alone_is_learned_as_request_and_numbers_are_no_keywords():
    replies = [HeardReply("ECHO", "echo hello world", "hello world"),
               HeardReply("ECHO", "echo open the door", "open the door"),
               HeardReply("WEATHER_SIMPLE", "how is the weather", "sunny and twenty one degrees"),
               HeardReply("WEATHER_SIMPLE", "how is the weather", "sunny and twenty one degrees")]
    data = calibrate(replies, command_words=["echo"]).data
    assert data["intents"]["ECHO"]["phrases"] == ["{request}"]
    assert set(data["intents"]["WEATHER_SIMPLE"]["keywords"]) == {"sunny", "degrees"}
