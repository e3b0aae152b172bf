"""Natural-language understanding for the reference gateway: transcript -> intent, pure functions.

::

    >>> understand("echo hello world")
    Understanding(intent='ECHO', confidence=0.95, slots={'words': 'hello world'})
    >>> understand("what's the weather like").intent
    'WEATHER_SIMPLE'

The intents are the real NLU contract's (:data:`voiceharness.guide.INTENTS`). A transcript that
is exactly one of the command language's phrasings (the grammar in ``commands.jsgf``; the wake
word "jarvis" may come first or last) gets a high confidence; one that only carries the intent's
keywords (as free text from another recognizer would) gets a lower one; anything else, and the
empty transcript, is ``UNKNOWN``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EXACT_CONFIDENCE", "KEYWORD_CONFIDENCE", "Understanding", "normalize", "understand"]

EXACT_CONFIDENCE = 0.95
KEYWORD_CONFIDENCE = 0.7
UNKNOWN_CONFIDENCE = 0.5  # how sure we are that a non-empty transcript is no command
EMPTY_CONFIDENCE = 1.0  # nothing was said: certainly no command

_CONTRACTIONS = {"what's": "what is", "how's": "how is", "it's": "it is", "whats": "what is"}
_WAKE = r"(?: jarvis)?"
_GREETING = re.compile(rf"^(?:hello|hi|hey|good (?:morning|afternoon|evening)){_WAKE}$")
_TIME = re.compile(rf"^(?:what time is it|what is the time|tell me the time){_WAKE}$")
_WEATHER = re.compile(
    rf"^(?:how is the weather|what is the weather(?: like)?|weather forecast|what is the forecast)"
    rf"(?: today)?{_WAKE}$"
)
_GREETING_WORDS = {"hello", "hi", "hey"}


@dataclass(frozen=True)
class Understanding:
    intent: str
    confidence: float
    slots: dict[str, Any] = field(default_factory=dict)


def normalize(transcript: str) -> str:
    """Lower case, no punctuation, contractions expanded, single spaces."""
    text = transcript.lower().replace("\u2019", "'")
    text = re.sub(r"[^a-z' ]+", " ", text)
    words = [_CONTRACTIONS.get(w, w) for w in text.split()]
    return " ".join(" ".join(words).replace("'", "").split()) if words else ""


def understand(transcript: str) -> Understanding:
    """Map a transcript to one of GREETING, ECHO, TIME_NOW, WEATHER_SIMPLE, UNKNOWN."""
    text = normalize(transcript)
    if not text:
        return Understanding("UNKNOWN", EMPTY_CONFIDENCE)
    words = text.split()
    if words[0] == "jarvis" and len(words) > 1:  # the wake word before the command
        words = words[1:]
        text = " ".join(words)
    if words[0] == "echo":
        if len(words) > 1:
            return Understanding("ECHO", EXACT_CONFIDENCE, {"words": " ".join(words[1:])})
        return Understanding("UNKNOWN", UNKNOWN_CONFIDENCE)
    for pattern, intent in ((_GREETING, "GREETING"), (_TIME, "TIME_NOW"), (_WEATHER, "WEATHER_SIMPLE")):
        if pattern.match(text):
            return Understanding(intent, EXACT_CONFIDENCE)
    # Free-text phrasings (a transcript from another recognizer): keywords, lower confidence.
    wordset = set(words)
    if "time" in wordset and wordset & {"what", "tell", "know"} and not wordset & {"weather"}:
        return Understanding("TIME_NOW", KEYWORD_CONFIDENCE)
    if wordset & {"weather", "forecast"}:
        return Understanding("WEATHER_SIMPLE", KEYWORD_CONFIDENCE)
    if words[0] in _GREETING_WORDS and len(words) <= 3:
        return Understanding("GREETING", KEYWORD_CONFIDENCE)
    return Understanding("UNKNOWN", UNKNOWN_CONFIDENCE)
