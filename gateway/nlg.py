"""Reply wording (natural-language generation): intent and slots in, the sentence to speak out.

::

    >>> reply_text("ECHO", {"words": "hello world"})
    'hello world'
    >>> reply_text("ECHO", {"words": "hello world"}, style="smartjarvis")
    'You said hello world.'

Two styles, one per gateway dialect (:data:`STYLES`):

* ``reference`` — the reference gateway's own sentences, one per intent (echo says the words
  back bare, time says "It is 9:05 AM.").
* ``smartjarvis`` — the published SmartJARVIS NLG service's templates, all of them (five per
  intent, four for ECHO): the sentences its gateway speaks, "{time}" as en-US ``h:mm AM/PM``,
  ECHO's "{words}" the request's words after its command word. The published service picks a
  template at random for every reply; :class:`gateway.pipeline.VoicePipeline` does the same
  (seeded, so a run can be repeated), and ``variant`` chooses one here.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

__all__ = [
    "GREETING_TEXT",
    "STYLES",
    "UNKNOWN_TEXT",
    "WEATHER_TEXT",
    "reply_text",
    "sentences",
    "time_text",
]

STYLES = ("reference", "smartjarvis")

GREETING_TEXT = "Hello! I am Jarvis. How can I help you?"
WEATHER_TEXT = "Today it is sunny with a few clouds, and the temperature is twenty one degrees."
UNKNOWN_TEXT = "Sorry, I did not understand. Please try again."

# The published SmartJARVIS NLG service's templates, word for word (punctuation included: the
# synthesizer phrases by it). "{words}" and "{time}" are filled per turn.
_SMARTJARVIS: dict[str, tuple[str, ...]] = {
    "GREETING": (
        "Hello! How can I help you today?",
        "Hi there! What would you like me to do?",
        "Greetings! I'm here to assist you.",
        "Hey! What can I do for you?",
        "Good to see you! How may I help?",
    ),
    "ECHO": ("You said: {words}", "I heard: {words}", "You mentioned: {words}", "You told me: {words}"),
    "TIME_NOW": (
        "The current time is {time}",
        "It's {time} right now",
        "The time is currently {time}",
        "Right now it's {time}",
        "It's {time} at the moment",
    ),
    "WEATHER_SIMPLE": (
        "I can't check the weather right now, but I'd be happy to help with other tasks!",
        "Weather information isn't available at the moment. Is there something else I can assist you with?",
        "I don't have access to weather data currently. What else can I help you with?",
        "Weather checking isn't working right now. How else can I be of service?",
        "I'm unable to get weather info at the moment. What other tasks can I help with?",
    ),
    "UNKNOWN": (
        "I'm not sure I understood that. Could you rephrase it?",
        "I didn't quite catch that. Can you say it differently?",
        "I'm not certain what you mean. Could you try again?",
        "That's not clear to me. Can you explain it another way?",
        "I'm confused by that request. Could you clarify?",
    ),
}


def clock_time(now: _dt.datetime) -> str:
    """'9:05 AM': spoken by espeak-ng as "nine oh five a m"."""
    hour = now.hour % 12 or 12
    return f"{hour}:{now.minute:02d} {'AM' if now.hour < 12 else 'PM'}"


def time_text(now: _dt.datetime) -> str:
    """The reference gateway's time sentence: 'It is 9:05 AM.'"""
    return f"It is {clock_time(now)}."


def sentences(intent: str, style: str = "reference") -> tuple[str, ...]:
    """Every phrasing ``style`` has for ``intent`` (templates, with ``{words}``/``{time}`` unfilled)."""
    if style == "smartjarvis":
        return _SMARTJARVIS.get(intent, _SMARTJARVIS["UNKNOWN"])
    fixed = {"GREETING": GREETING_TEXT, "WEATHER_SIMPLE": WEATHER_TEXT, "UNKNOWN": UNKNOWN_TEXT}
    if intent == "ECHO":
        return ("{words}",)
    if intent == "TIME_NOW":
        return ("It is {time}.",)
    return (fixed.get(intent, UNKNOWN_TEXT),)


def reply_text(
    intent: str,
    slots: dict[str, Any] | None = None,
    now: _dt.datetime | None = None,
    *,
    style: str = "reference",
    variant: int = 0,
) -> str:
    """The sentence that answers ``intent`` in ``style``; ``variant`` picks among its phrasings."""
    if style not in STYLES:
        raise ValueError(f"reply style must be one of {', '.join(STYLES)}, got {style!r}")
    slots = slots or {}
    words = str(slots.get("words", "")).strip()
    if intent == "ECHO" and not words:
        intent = "UNKNOWN"  # nothing to say back
    options = sentences(intent, style)
    template = options[variant % len(options)]
    time_now = clock_time(now or _dt.datetime.now()) if "{time}" in template else ""
    return template.format(words=words, time=time_now)
