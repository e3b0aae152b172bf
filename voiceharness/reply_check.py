"""The reply-check language: what a reply's text must say, beyond its intent.

A corpus utterance carries one clause (its manifest's ``reply_check`` column, empty for none);
matching ignores case, punctuation and repeated spaces::

    contains:hello world      the reply text contains the words "hello world", in that order
    any:sunny|rain|cloud      the reply text contains at least one of the alternatives
    regex:\\d{1,2}            the reply text matches the regular expression (re.search, ignore case)
    nonempty                  the reply text is not empty

* :func:`parse_reply_check` — ``(operation, argument)`` of a clause, ValueError naming what is
  wrong (the corpus loader reports it with the manifest's line);
* :func:`check_reply_text` — what is wrong with a reply text under a clause, or None;
* :func:`check_reply` — the same for a whole reply to an utterance: its intent first, then its text.

Judging logic only: no I/O, no corpus files; anything with ``expected_intent`` and
``reply_check`` (an :class:`audio_corpus.Utterance`) is an utterance here.
"""

from __future__ import annotations

import re
from typing import Protocol

OPERATIONS = ("contains", "any", "regex", "nonempty")


class Expected(Protocol):
    """What a reply is checked against: the utterance's expected intent and reply check."""

    @property
    def expected_intent(self) -> str: ...
    @property
    def reply_check(self) -> str: ...


def parse_reply_check(spec: str) -> tuple[str, str]:
    """``(operation, argument)`` of a reply_check, ``("", "")`` for none; ValueError if malformed."""
    spec = spec.strip()
    if not spec:
        return "", ""
    operation, _, argument = spec.partition(":")
    operation = operation.strip().lower()
    argument = argument.strip()
    if operation not in OPERATIONS:
        raise ValueError(
            f"reply_check {spec!r}: unknown check {operation!r}; use contains:WORDS, any:A|B, "
            f"regex:PATTERN or nonempty"
        )
    if operation == "nonempty":
        if argument:
            raise ValueError(f"reply_check {spec!r}: nonempty takes no argument")
        return operation, ""
    if not argument or (operation == "any" and not all(normalise_words(a) for a in argument.split("|"))):
        raise ValueError(f"reply_check {spec!r}: {operation} needs text after the colon")
    if operation == "regex":
        try:
            re.compile(argument)
        except re.error as error:
            raise ValueError(f"reply_check {spec!r}: bad regular expression ({error})") from None
    return operation, argument


def normalise_words(text: str) -> str:
    """Lower case, punctuation dropped (apostrophes too: "what's" -> "whats"), single spaces."""
    text = re.sub(r"['\u2019]", "", text.lower())
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def check_reply_text(reply_check: str, reply_text: str) -> str | None:
    """What is wrong with ``reply_text`` under the ``reply_check`` clause, or None when it is right."""
    operation, argument = parse_reply_check(reply_check)
    if not operation:
        return None
    reply = normalise_words(reply_text)
    if not reply:
        return f"no reply text to check (expected {reply_check})"
    if operation == "nonempty":
        return None
    if operation == "contains":
        if f" {normalise_words(argument)} " in f" {reply} ":
            return None
        return f"reply {reply_text!r} does not contain {argument!r}"
    if operation == "any":
        if any(f" {normalise_words(a)} " in f" {reply} " for a in argument.split("|")):
            return None
        return f"reply {reply_text!r} contains none of {argument!r}"
    if re.search(argument, reply_text, flags=re.IGNORECASE):
        return None
    return f"reply {reply_text!r} does not match /{argument}/"


def check_reply(utterance: Expected, intent: str | None, reply_text: str | None) -> str | None:
    """A description of what is wrong with a reply to ``utterance``, or None when it is right.

    Checks the recognised ``intent`` (None: none arrived) against the expected one, then the
    ``reply_text`` (the gateway's reply or transcript text, None or "" when it sent none)
    against the utterance's reply_check.
    """
    if intent is None or intent == "":
        return f"no intent received (expected {utterance.expected_intent})"
    if intent != utterance.expected_intent:
        return f"intent {intent}, expected {utterance.expected_intent}"
    return check_reply_text(utterance.reply_check, reply_text or "")
