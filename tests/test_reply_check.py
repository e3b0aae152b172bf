"""voiceharness.reply_check: a reply's intent, then its text under the utterance's reply-check clause."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from voiceharness.reply_check import check_reply


@dataclass(frozen=True)
class Said:
    """What check_reply reads of an utterance (an audio_corpus.Utterance has these too)."""

    expected_intent: str
    reply_check: str = ""


def test_check_reply_for_echo_needs_the_echoed_words():
    echo = Said("ECHO", "contains:hello world")
    assert check_reply(echo, "ECHO", "Hello, world!") is None
    assert "does not contain 'hello world'" in check_reply(echo, "ECHO", "hello there")
    assert "no reply text" in check_reply(echo, "ECHO", None)
    assert check_reply(echo, "GREETING", "hello world") == "intent GREETING, expected ECHO"
    assert "no intent received" in check_reply(echo, None, "hello world")


def test_check_reply_without_a_check_only_checks_the_intent():
    greeting = Said("GREETING")
    assert check_reply(greeting, "GREETING", "") is None


@pytest.mark.parametrize(
    ("check", "reply", "ok"),
    [
        ("any:sunny|rain", "It will rain today", True),
        ("any:sunny|rain", "It is cloudy", False),
        (r"regex:\d{1,2}:\d\d", "It is 12:45", True),
        (r"regex:\d{1,2}:\d\d", "It is noon", False),
        ("nonempty", "anything", True),
        ("contains:whats the weather", "What's the weather", True),
    ],
)
def test_reply_check_language(check, reply, ok):
    utterance = Said("WEATHER_SIMPLE", check)
    assert (check_reply(utterance, "WEATHER_SIMPLE", reply) is None) is ok
