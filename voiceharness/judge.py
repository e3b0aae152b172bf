"""The verdict on a turn — the one place a failure code is chosen.

The protocol session (:mod:`voiceharness.protocol`) says how a turn ended (:class:`TurnEnded`:
the reply's end, a gateway fault, a lost connection, a turn the I/O layer abandoned) and the
turn's meter (:mod:`voiceharness.turn`) what its reply held; this module turns that into a
:class:`Verdict`, in this order:

1. How the turn ended, when that already decides it: abandoned by the I/O layer (``dead_link``,
   ``gateway_protocol``, ``recording_stopped``, ``harness_error``, ``run_stopped``); the
   connection lost while speaking or awaiting the reply (``recording_stopped``) or during it
   (``incomplete_reply``); a WAV reply cut short (``incomplete_reply``); a message the protocol
   does not allow (``gateway_protocol``).
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

And for turns that never reached the gateway: :func:`connection_failed` (the connection's
diagnosis, or ``connection_gave_up`` after maxRetries) and :func:`interrupted` (the run ended,
or a harness bug, before the turn began). Nothing here does I/O or knows Locust; the
listener's result is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from voiceharness.protocol import Metadata, TurnEnded
from voiceharness.reply_check import check_reply_text

RUN_STOPPED = "run_stopped"
HARNESS_ERROR = "harness_error"


class Heard(Protocol):
    """What the listener made of a reply's audio (:class:`voiceharness.listener.Heard`): the
    intent (None: it could not tell), the transcript, and why (the winner's score, the runner-up
    and its score, the expectations it judged by)."""

    intent: str | None
    transcript: str
    score: float
    runner_up: str
    runner_up_score: float
    expectations: str


class ReplyAudioFigures(Protocol):
    """What the verdict needs of a reply's audio (:class:`voiceharness.turn.ReplyRecording`)."""

    samples: int
    audio_bytes: int
    duration_ms: float
    silent: bool


@dataclass(frozen=True)
class Expectation:
    """What a turn should come back with.

    ``intent``: the expected intent ("" = any). ``reply_check``: the corpus's reply-check
    mini-language applied to the reply text (:mod:`voiceharness.reply_check`).
    ``request_text``: what was said (the listener needs it for an ECHO reply).
    ``check``: the scenario's own check, called with the finished turn; it returns None or
    True when the turn is right, or a message (or False) when it is not.
    """

    intent: str = ""
    reply_check: str = ""
    request_text: str = ""
    check: Callable[[Any], object] | None = None


@dataclass(frozen=True)
class Verdict:
    """What a turn came back with and whether that was right: the judge's part of a record."""

    success: bool
    failure: str = ""  # a diagnosis code (voiceharness.diagnoses), "" on success
    failure_detail: str = ""
    intent: str = ""
    intent_source: str = ""  # "metadata", "audio" or "" (not judged)
    confidence: float = math.nan
    transcript: str = ""  # what the gateway says it recognised
    reply_text: str = ""  # the reply sentence its metadata gave
    audio_intent: str = ""  # what the listener heard in the reply audio
    reply_transcript: str = ""
    # Why the listener heard what it heard: its winner's score, the runner-up and its score, and
    # the expectations file it judged against.
    judge_score: float = math.nan
    judge_runner_up: str = ""
    judge_runner_up_score: float = math.nan
    judge_expectations: str = ""

    def record_fields(self) -> dict[str, Any]:
        return {"success": self.success, "failure": self.failure, "failure_detail": self.failure_detail,
                "intent": self.intent, "intent_source": self.intent_source, "confidence": self.confidence,
                "transcript": self.transcript, "reply_text": self.reply_text, "audio_intent": self.audio_intent,
                "reply_transcript": self.reply_transcript, "judge_score": self.judge_score,
                "judge_runner_up": self.judge_runner_up, "judge_runner_up_score": self.judge_runner_up_score,
                "judge_expectations": self.judge_expectations}


def needs_listening(audio: ReplyAudioFigures, metadata: Metadata | None, ended: TurnEnded, *, cross_check: bool,
                    metadata_only: bool = False) -> bool:
    """Should the listener hear this reply? When it is the only source of the intent, or to cross-check."""
    if not audio.samples or audio.silent or ended.wav_truncated or _ended_in_failure(ended):
        return False
    if metadata is None:
        return not metadata_only
    return cross_check


def _ended_in_failure(ended: TurnEnded) -> bool:
    return ended.abandoned is not None or (ended.ended_by == "connection_lost" and ended.lost_while != "reply over")


def judge_turn(ended: TurnEnded, audio: ReplyAudioFigures, metadata: Metadata | None, expectation: Expectation, *,
               heard: Heard | None = None, reply_timeout_ms: float = math.nan,
               metadata_only: bool = False) -> Verdict:
    """The verdict on a turn that reached the gateway (steps 1-4 of the module docstring; the
    scenario's own check, step 5, is :func:`scenario_check`, run on the finished turn)."""
    said = {}
    if metadata is not None:
        said = {"intent": metadata.intent, "intent_source": "metadata", "confidence": metadata.confidence,
                "transcript": metadata.transcript, "reply_text": metadata.reply_text}
    if heard is not None:
        said.update(audio_intent=heard.intent or "", reply_transcript=heard.transcript, judge_score=heard.score,
                    judge_runner_up=heard.runner_up, judge_runner_up_score=heard.runner_up_score,
                    judge_expectations=heard.expectations)
    failure = _how_it_ended(ended, audio)
    if failure is not None:
        return Verdict(False, *failure, **said)
    expected = expectation.intent
    if metadata is None and not audio.samples:
        detail = (f"no intent within {reply_timeout_ms:.0f} ms (no reply at all)"
                  if ended.ended_by == "deadline" and not math.isnan(reply_timeout_ms)
                  else "the reply ended without intent or audio")
        return Verdict(False, "no_intent", detail, **said)
    if metadata is not None:
        if expected and metadata.intent != expected:
            return Verdict(False, "wrong_intent", f"expected {expected}, got {metadata.intent}", **said)
        if not audio.samples:
            return Verdict(False, "no_audio_tts", f"intent {metadata.intent} but no reply audio", **said)
        if audio.silent:
            return Verdict(False, "silent_reply", f"intent {metadata.intent}, {audio.duration_ms:.0f} ms of digital "
                                                  "silence", **said)
        if expectation.reply_check:
            problem = check_reply_text(expectation.reply_check, metadata.reply_text)
            if problem:
                return Verdict(False, "wrong_reply", problem, **said)
        if heard is not None and heard.intent and heard.intent != metadata.intent:
            return Verdict(False, "reply_mismatch", f"metadata says {metadata.intent}, the audio says {heard.intent} "
                                                    f"({heard.transcript!r})", **said)
        return Verdict(True, **said)
    if audio.silent:
        return Verdict(False, "silent_reply", f"{audio.duration_ms:.0f} ms of digital silence and no metadata", **said)
    if metadata_only:
        return Verdict(False, "no_intent", "reply audio without metadata (--reply-format metadata)", **said)
    if heard is not None:
        if not heard.intent:
            return Verdict(False, "unjudged", f"heard {heard.transcript!r}", **said)
        said.update(intent=heard.intent, intent_source="audio")
        if expected and heard.intent != expected:
            return Verdict(False, "wrong_intent", f"expected {expected}, heard {heard.intent} ({heard.transcript!r})",
                           **said)
    return Verdict(True, **said)


def _how_it_ended(ended: TurnEnded, audio: ReplyAudioFigures) -> tuple[str, str] | None:
    """The failure how the turn ended decides by itself (step 1), or None."""
    if ended.abandoned is not None:
        return ended.abandoned.value, ended.abandon_detail
    if ended.ended_by == "connection_lost" and ended.lost_while != "reply over":
        detail = f"close code {ended.close_code}" if ended.close_code is not None else "connection dropped"
        if ended.lost_reason:
            detail += f": {ended.lost_reason}"
        if ended.lost_while == "receiving reply":
            return "incomplete_reply", f"reply cut after {audio.audio_bytes} audio bytes; {detail}"
        return "recording_stopped", f"{detail} while {ended.lost_while}"
    if ended.wav_truncated:
        return "incomplete_reply", f"the reply's WAV file was cut short ({audio.audio_bytes} audio bytes arrived)"
    if ended.fault:
        return "gateway_protocol", ended.fault
    return None


def scenario_check(check: Callable[[Any], object], subject: object) -> Verdict:
    """The scenario's own check on the finished turn (step 5): a problem it returns → ``check_failed``."""
    verdict = check(subject)
    if verdict is None or verdict is True:
        return Verdict(True)
    if verdict is False:
        return check_failed(f"the scenario's check {getattr(check, '__name__', 'expect')} failed")
    return check_failed(verdict)


def check_failed(message: object) -> Verdict:
    """The scenario found the turn wrong (``turn.failure(message)``)."""
    return Verdict(False, "check_failed", str(message))


def passed_by_scenario() -> Verdict:
    """The scenario accepts the turn whatever was found (``turn.success()``)."""
    return Verdict(True)


def connection_failed(diagnosis: str, detail: str, *, failed_attempts: int = 0, gave_up: bool = False) -> Verdict:
    """A turn that could not connect: the connection's diagnosis, or ``connection_gave_up``
    once the user stops retrying (maxRetries) a failure that retrying might have fixed."""
    if gave_up:
        return Verdict(False, "connection_gave_up", f"{failed_attempts} failed attempts; last: {diagnosis}: {detail}")
    return Verdict(False, diagnosis, detail)


def interrupted(error: BaseException, while_what: str) -> Verdict:
    """A turn cut short outside the protocol (while connecting, say): the end of the run (or
    Ctrl-C) is ``run_stopped``, an exception is a bug in the harness, ``harness_error``."""
    if isinstance(error, Exception):
        return Verdict(False, HARNESS_ERROR, f"{while_what}: {type(error).__name__}: {error}")
    return Verdict(False, RUN_STOPPED, f"{while_what}: {type(error).__name__}: {error}")


def run_stopped(detail: str) -> Verdict:
    return Verdict(False, RUN_STOPPED, detail)


def interrupted_while_judging(error: BaseException) -> Verdict:
    """The listener or the scenario's check failed (a bug: the harness could not judge the turn),
    or the run ended while the reply was being heard; the turn's timings stand."""
    if isinstance(error, Exception):
        return Verdict(False, HARNESS_ERROR, f"while judging: {type(error).__name__}: {error}")
    return Verdict(False, RUN_STOPPED, "the run ended while the reply was being judged")
