"""Did the turn do what was expected? The verdict on one turn, from what the reply *says*.

The protocol session (:mod:`voiceharness.protocol`) measures a turn and diagnoses what went
wrong with the connection or the gateway's framing. This module judges the content, in
this order, and writes the verdict into the turn's record:

1. A failure the session already found (the connection dropped, a cut reply, a malformed
   message...) stands.
2. No reply at all: ``no_intent``.
3. The gateway sent metadata (the reference shape): its intent is the turn's intent
   (``intent_source = metadata``). Wrong intent → ``wrong_intent``; no audio →
   ``no_audio_tts``; audio that is digital silence → ``silent_reply``; a reply text that
   fails the utterance's reply check (ECHO without the words) → ``wrong_reply``. With
   cross-checking on (``--judge-replies``) the audio is also heard, and an intent heard
   that differs from the metadata's → ``reply_mismatch``.
4. Audio and no metadata (the published SmartJARVIS gateway): digital silence →
   ``silent_reply``; otherwise the intent is what the listener heard in the reply audio
   (``intent_source = audio``, :mod:`voiceharness.listener`): nothing classifiable →
   ``unjudged``, another intent → ``wrong_intent``. A reply that was not heard (judging off,
   or this turn not in the sample) keeps ``intent_source`` empty: it counts as answered,
   and is left out of intent accuracy.
5. The scenario's own expectation (a callable given to ``say(expect=...)``) last: a problem
   it returns → ``check_failed`` (as ``turn.failure(...)`` in a ``catch_response`` block).

Nothing here does I/O or knows Locust; the listener's result is passed in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from voiceharness import replies
from voiceharness.turns import TurnRecord


class Heard(Protocol):
    """What the listener made of a reply's audio (see :mod:`voiceharness.listener`; it also
    gives ``score``, ``runner_up``, ``runner_up_score`` and ``expectations``, recorded when present)."""

    intent: str | None
    transcript: str


@dataclass(frozen=True)
class Expectation:
    """What a turn should come back with.

    ``intent``: the expected intent ("" = any). ``reply_check``: the corpus's reply-check
    mini-language applied to the reply text (see :func:`audio_corpus.parse_reply_check`).
    ``request_text``: what was said (the listener needs it for an ECHO reply).
    ``check``: the scenario's own check, called with the finished turn; it returns None or
    True when the turn is right, or a message (or False) when it is not.
    """

    intent: str = ""
    reply_check: str = ""
    request_text: str = ""
    check: Callable[[Any], object] | None = None


def needs_listening(audio: replies.ReplyAudio, metadata: replies.Metadata | None, *, cross_check: bool,
                    metadata_only: bool = False) -> bool:
    """Should the listener hear this reply? When it is the only source of the intent, or to cross-check."""
    if not audio.samples or audio.silent or audio.truncated:
        return False
    if metadata is None:
        return not metadata_only
    return cross_check


def judge(record: TurnRecord, audio: replies.ReplyAudio, metadata: replies.Metadata | None,
          expectation: Expectation, *, heard: Heard | None = None, ended_by: str = "",
          reply_timeout_ms: float = math.nan, metadata_only: bool = False, subject: object = None) -> None:
    """Write the verdict into ``record`` (``success``, ``failure``, ``intent`` and where it came from).

    ``metadata_only`` (``--reply-format metadata``): a reply without metadata has no intent.
    ``subject`` is what the scenario's own check is called with (the finished turn; default the record).
    """
    if heard is not None:
        record.audio_intent = heard.intent or ""
        record.reply_transcript = heard.transcript
        record.judge_score = getattr(heard, "score", math.nan)
        record.judge_runner_up = getattr(heard, "runner_up", "")
        record.judge_runner_up_score = getattr(heard, "runner_up_score", math.nan)
        record.judge_expectations = getattr(heard, "expectations", "")
    if record.failure:
        record.success = False
        return
    expected = expectation.intent
    if metadata is None and not audio.samples:
        detail = (f"no intent within {reply_timeout_ms:.0f} ms (no reply at all)"
                  if ended_by == "deadline" and not math.isnan(reply_timeout_ms)
                  else "the reply ended without intent or audio")
        _fail(record, "no_intent", detail)
        return
    if metadata is not None:
        record.intent_source = "metadata"
        if expected and metadata.intent != expected:
            _fail(record, "wrong_intent", f"expected {expected}, got {metadata.intent}")
            return
        if not audio.samples:
            _fail(record, "no_audio_tts", f"intent {metadata.intent} but no reply audio")
            return
        if audio.silent:
            _fail(record, "silent_reply", f"intent {metadata.intent}, {audio.duration_ms:.0f} ms of digital silence")
            return
        if expectation.reply_check:
            problem = check_reply_text(expectation.reply_check, metadata.reply_text)
            if problem:
                _fail(record, "wrong_reply", problem)
                return
        if heard is not None and heard.intent and heard.intent != metadata.intent:
            _fail(record, "reply_mismatch", f"metadata says {metadata.intent}, the audio says {heard.intent} "
                                            f"({heard.transcript!r})")
            return
    else:
        if audio.silent:
            _fail(record, "silent_reply", f"{audio.duration_ms:.0f} ms of digital silence and no metadata")
            return
        if metadata_only:
            _fail(record, "no_intent", "reply audio without metadata (--reply-format metadata)")
            return
        if heard is not None:
            if not heard.intent:
                _fail(record, "unjudged", f"heard {heard.transcript!r}")
                return
            record.intent = heard.intent
            record.intent_source = "audio"
            # The intent was carried by the reply audio as a whole: it was known when the audio was in.
            record.intent_ms = record.reply_ms
            if expected and heard.intent != expected:
                _fail(record, "wrong_intent", f"expected {expected}, heard {heard.intent} ({heard.transcript!r})")
                return
    if expectation.check is not None:
        problem = _run_check(expectation.check, record if subject is None else subject)
        if problem:
            _fail(record, "check_failed", problem)
            return
    record.success = True
    record.failure = record.failure_detail = ""


def check_reply_text(reply_check: str, reply_text: str) -> str | None:
    """What is wrong with ``reply_text`` under the corpus's ``reply_check`` mini-language, or None.

    ``contains:WORDS`` (the words, in order), ``any:A|B``, ``regex:PATTERN`` (re.search, any
    case), ``nonempty``; matching ignores case, punctuation and repeated spaces.
    """
    from audio_corpus import parse_reply_check

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


def normalise_words(text: str) -> str:
    """Lower case, punctuation dropped (apostrophes too: "what's" -> "whats"), single spaces."""
    text = re.sub(r"['\u2019]", "", text.lower())
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def _run_check(check: Callable[[Any], object], subject: object) -> str | None:
    verdict = check(subject)
    if verdict is None or verdict is True:
        return None
    if verdict is False:
        return f"the scenario's check {getattr(check, '__name__', 'expect')} failed"
    return str(verdict)


def _fail(record: TurnRecord, failure: str, detail: str) -> None:
    record.success = False
    record.failure = failure
    record.failure_detail = detail
