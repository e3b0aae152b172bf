"""``VoiceClient``: one simulated user's voice connection, in Locust's client style.

Like ``HttpUser``'s ``self.client``, it is what a scenario calls, and it fires Locust
``request`` events for everything it does::

    turn = self.client.say("hello jarvis", expect="GREETING")
    with self.client.say("what time is it", catch_response=True) as turn:
        if "time" not in turn.reply_transcript:
            turn.failure("the reply does not say the time")
    self.client.silence(500)
    self.client.hangup()

``say(what)`` takes a corpus :class:`~audio_corpus.Utterance`, an utterance id, a path to a
WAV file or plain text (spoken by espeak-ng on first use, cached on disk); ``expect`` is an
intent or a callable on the finished :class:`~voiceharness.turn.Turn` (None or True = right,
a message or False = wrong). Every turn runs through :func:`voiceharness.turn.run_turn` and
leaves one row in the turns file.

Events (``name`` = the utterance id, or its expected intent with ``--stats-by intent``):

==========  ======================================================  ==========================================
type        response time                                           failure when
==========  ======================================================  ==========================================
connect     TCP + TLS + upgrade (a failed attempt: until it failed)  the connection failed (its diagnosis)
intent      end of speech → the message that carried the intent     the intent is not the expected one
roundtrip   end of speech → first reply audio                       no reply audio
audible     end of speech → first audible reply sample              the reply audio is silence
reply       end of speech → last reply audio                        the reply was cut or does not say what it should
ping        WebSocket ping → pong                                   -
recovery    connection lost → reconnected                           -
==========  ======================================================  ==========================================

A failure's response time is the time it took to fail (to the deadline or the drop), or
None when nothing was measured. A harness bug inside a turn is recorded as ``harness_error``
(its traceback logged once, by Locust) and never fired as the gateway's failure.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any

import gevent
from locust.exception import RescheduleTask, StopUser

from voiceharness import diagnoses, judge, protocol
from voiceharness.errors import ConnectionFailed
from voiceharness.judge import Expectation
from voiceharness.live_stats import RUN_STOPPED
from voiceharness.locust.runtime import runtime_of
from voiceharness.locust.transport import VoiceConnection
from voiceharness.settings import backoff_ms
from voiceharness.turn import StreamPlan, Turn, interrupted_turn, run_turn
from voiceharness.turns import TurnContext, TurnRecord, evolve


class VoiceFailure(Exception):
    """A failed turn as Locust shows it in its failures table (message = the diagnosis)."""


# Which event a failed turn fails (the others that were measured fire as successes).
EVENT_OF_FAILURE = MappingProxyType({
    "no_intent": "intent",
    "wrong_intent": "intent",
    "unjudged": "intent",
    "recording_stopped": "intent",
    "dead_link": "intent",
    "gateway_protocol": "intent",
    "no_audio_tts": "roundtrip",
    "silent_reply": "audible",
    "incomplete_reply": "reply",
    "wrong_reply": "reply",
    "reply_mismatch": "reply",
    "check_failed": "reply",
})


class VoiceClient:
    """The voice connection of one simulated user (see the module docstring)."""

    def __init__(self, user) -> None:
        self.user = user
        self.environment = user.environment
        self.runtime = runtime_of(user.environment)
        self.number = next(self.runtime.user_numbers)
        self.connection: VoiceConnection | None = None
        self.turn_index = 0
        self.turns_on_connection = 0
        self.reconnections = 0
        self.ever_connected = False
        self.failed_connects = 0
        self.outage_started: float | None = None  # monotonic s: first failed attempt or unclean drop
        self.pending_connect_ms = math.nan
        self.scenario = getattr(user, "scenario", "") or type(user).__name__
        self._open_turn: tuple[Any, TurnContext] | None = None  # (utterance, context) until recorded
        # Set by an open-model call (voiceharness.locust.calls) for the turns it makes
        self.call_id = ""
        self.offered_rate_per_s = math.nan
        # The latest turn recorded in an open-model call (the call reads its verdict); None outside
        # calls: a record is ~2.3 KB, kept per user until the next turn for nothing.
        self.last_record: TurnRecord | None = None

    @property
    def config(self):
        return self.runtime.config

    # -- the connection
    def connect(self) -> VoiceConnection:
        """Open the connection if it is not open (after the backoff step an unclean drop asks for);
        raises ConnectionFailed when the attempt fails."""
        connection = self.connection
        if connection is not None and connection.is_open:
            limit = self.config.turns_per_connection
            if not limit or self.turns_on_connection < limit:
                return connection
            connection.close(protocol.CLOSE_NORMAL, "turns per connection reached")
        if connection is not None and not connection.closed_cleanly and connection.is_closed:
            if self.outage_started is None:
                self.outage_started = connection.closed_at
            # Like the browser tester, reconnect after the first backoff step, not at once.
            gevent.sleep(backoff_ms(0, self.user.rng) / 1000)
        self.connection = None
        return self._open()

    def _open(self) -> VoiceConnection:
        config = self.config
        session = protocol.ClientSession(
            reply_timeout_s=config.reply_timeout_s,
            reply_gap_s=config.reply_gap_s,
            reply_format=config.reply_format,
            pcm_sample_rate_hz=config.reply_sample_rate_hz,
        )
        profile = config.network.profile_for(self.number) if config.network is not None else None
        connection = VoiceConnection(config.settings, config.connect, session, self._on_event, pacer=self.runtime.pacer,
                                     network=profile, network_seed=f"{self.runtime.worker_name}/{self.number}/"
                                                                   f"{self.reconnections}")
        fire = self.environment.events.request.fire
        try:
            connection.open()
        except ConnectionFailed as failure:
            fire(request_type="connect", name="connect",
                 response_time=None if math.isnan(failure.elapsed_ms) else failure.elapsed_ms, response_length=0,
                 exception=VoiceFailure(f"{diagnoses.DIAGNOSES[failure.diagnosis].finding}: {failure}"), context={})
            self.failed_connects += 1
            if self.outage_started is None:
                self.outage_started = time.monotonic()
            raise
        fire(request_type="connect", name="connect", response_time=connection.connect_ms, response_length=0,
             exception=None, context={})
        if self.ever_connected:
            self.reconnections += 1
        if self.outage_started is not None and self.ever_connected:
            recovery_ms = (time.monotonic() - self.outage_started) * 1000
            self.runtime.logbook.success(f"Recovered after {recovery_ms:.0f} ms and {self.failed_connects} failed attempts")
            fire(request_type="recovery", name="time to recover", response_time=recovery_ms,
                 response_length=self.failed_connects, exception=None, context={})
        self.outage_started = None
        self.failed_connects = 0
        self.ever_connected = True
        self.connection = connection
        self.turns_on_connection = 0
        self.pending_connect_ms = connection.connect_ms
        self.runtime.logbook.log("success", f"WebSocket connected successfully ({connection.connect_ms:.1f} ms)",
                                 echo=False)
        return connection

    def _on_event(self, event: object) -> None:
        if isinstance(event, protocol.PingMeasured):
            self.environment.events.request.fire(
                request_type="ping", name="ping", response_time=event.ping_ms, response_length=0,
                exception=None, context={},
            )

    def hangup(self) -> None:
        """Close the connection cleanly (1000); the next ``say()`` opens a new one."""
        if self.connection is not None:
            self.connection.close(protocol.CLOSE_NORMAL, "hang up")
            self.connection = None

    def silence(self, ms: float) -> None:
        """Stream ``ms`` of silence at real-time pace on the open connection, outside any turn
        (a pause a person makes with the microphone open)."""
        connection = self.connect()
        chunk = self.config.settings.chunk_samples
        frame = connection.pacer.silence_frame(chunk)
        frame_s = chunk / 16000
        start = time.monotonic()
        for index in range(max(0, math.ceil(ms / 1000 / frame_s))):
            wait = start + index * frame_s - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            connection.send_preframed(frame)

    # -- turns
    def say(self, what: Any, *, expect: str | Callable[[Turn], object] | None = None, pace: str | None = None,
            catch_response: bool = False, name: str | None = None, scenario: str | None = None,
            voice: str | None = None, rate_wpm: int | None = None):
        """Say ``what`` and judge the reply; returns the :class:`Turn`, or with ``catch_response``
        a context manager yielding it (events fire when the block ends).

        ``name``: the Locust request name (default: the utterance id, or its intent with
        ``--stats-by intent``). ``voice``/``rate_wpm``: espeak-ng's voice and speed for plain text.
        """
        if catch_response:
            return self._say_caught(what, expect=expect, pace=pace, name=name, scenario=scenario, voice=voice,
                                    rate_wpm=rate_wpm)
        # Keywords spelled out, not ``**options``: a call with ``**`` runs in a C-level interpreter frame
        # of its own, which stays on this user's stack (and in its greenlet's saved copy) for the turn.
        turn = self._run(what, expect=expect, pace=pace, name=name, scenario=scenario, voice=voice,
                         rate_wpm=rate_wpm)
        self._report(turn.record)
        return turn

    @contextlib.contextmanager
    def _say_caught(self, what, **options) -> Iterator[Turn]:
        turn = self._run(what, **options)
        try:
            yield turn
        except Exception as error:
            turn.failure(f"{type(error).__name__}: {error}")
            raise
        finally:
            self._report(turn.record)

    def _run(self, what, *, expect, pace, name, scenario, voice, rate_wpm) -> Turn:
        config = self.config
        utterance = self.runtime.utterance(what, voice=voice, rate_wpm=rate_wpm)
        context = self._context(utterance, scenario or self.scenario, pace or config.pace, name)
        # From here on the turn ends in exactly one record: here, or in on_stop if the run ends first.
        self.runtime.run_status.turn_started()
        self._open_turn = (utterance, context)
        try:
            connection = self.connect()
        except ConnectionFailed as failure:
            self._connection_failed(failure, utterance, context)
        except BaseException as error:  # the run ended (or a bug) while connecting
            self._report(interrupted_turn(context, judge.interrupted(error, "while connecting"), utterance).record)
            raise
        context = self._connected(context, connection)
        expectation = self._expectation(utterance, expect)
        chunk = config.settings.chunk_samples
        frame_s = chunk / 16000
        plan = StreamPlan(
            frames=utterance.frames(chunk),
            speech_end_frame=utterance.speech_end_frame(chunk),
            chunk_samples=chunk,
            pace=context.pace,
            min_silence_frames=math.ceil(config.trailing_silence_ms / 1000 / frame_s),
            key=utterance,
        )
        self._open_turn = (utterance, context)
        try:
            turn = run_turn(
                connection, plan, expectation, context, what=utterance,
                send_marker=config.end_marker, open_mic=config.mic_during_reply == "open",
                listen=self.runtime.judge.listen, cross_check=config.judge_replies,
                metadata_only=config.reply_format.value == "metadata",
                keep_reply_audio=True if self.runtime.judge.saver is not None else None,
            )
        except BaseException as error:
            # run_turn ended the turn (harness_error, or run_stopped) before passing this on.
            interrupted = connection.events.interrupted
            if interrupted is not None:
                self._report(interrupted.record)
            if (interrupted is None or interrupted.ended_by == "abandoned") and not connection.is_closed:
                # Interrupted mid-stream: a frame may be half written; the next turn starts afresh.
                # A user stopped by the run (GreenletExit, not an Exception) is going away; only a
                # bug in the harness is an internal error, and the gateway's logs should say which.
                if isinstance(error, Exception):
                    connection.close(protocol.CLOSE_INTERNAL_ERROR, "harness error")
                else:
                    connection.close(protocol.CLOSE_GOING_AWAY, "user stopped")
            raise
        self.turns_on_connection += 1
        if self.runtime.judge.saver is not None and len(turn.reply_samples):
            record = turn.record
            # With --redact the words said stay out of the index too (an ECHO reply is then judged
            # without knowing the words it should repeat).
            self.runtime.judge.save(f"{record.worker}:{record.user}:{record.turn_index}", record,
                                    "" if config.redact else utterance.text, turn.reply_samples,
                                    turn.reply_sample_rate_hz)
        return turn

    def _context(self, utterance, scenario: str, pace: str, name: str | None) -> TurnContext:
        """The turn's identity, before it starts (the connection's is added once connected)."""
        config = self.config
        return TurnContext(
            timestamp=time.time(), worker=self.runtime.worker_name, user=self.number, turn_index=self.turn_index,
            scenario=scenario, utterance_id=utterance.id, request_name=self._name(utterance, name),
            expected_intent=utterance.expected_intent, speech_ms=utterance.duration_ms, pace=pace,
            dialect=config.dialect.name, reconnections=self.reconnections, redact=config.redact,
            call_id=self.call_id, offered_rate_per_s=self.offered_rate_per_s,
            network_profile=config.network.profile_for(self.number).name if config.network is not None else "",
        )

    def _connected(self, context: TurnContext, connection: VoiceConnection) -> TurnContext:
        # The connect time goes with the first turn on a connection only (it is counted once).
        connect_ms, self.pending_connect_ms = self.pending_connect_ms, math.nan
        return evolve(context, connection_id=connection.session.header.session_id, reconnections=self.reconnections,
                      connect_ms=connect_ms)

    def _connection_failed(self, failure: ConnectionFailed, utterance, context: TurnContext) -> None:
        """Record the turn that could not connect, then stop the user or wait the backoff."""
        give_up = not failure.retryable or self.failed_connects > self.config.settings.max_retries
        verdict = judge.connection_failed(failure.diagnosis, str(failure), failed_attempts=self.failed_connects,
                                          gave_up=give_up and failure.retryable)
        record = interrupted_turn(context, verdict, utterance).record
        self._report(record)
        if give_up:
            self.runtime.logbook.error(f"User {self.number} stops: "
                                       f"{self.runtime.explain_once(record.failure, record.failure_detail)}")
            raise StopUser()
        # The reconnect backoff replaces the think time before the next attempt.
        self.user.retry_in_s = backoff_ms(self.failed_connects - 1, self.user.rng) / 1000
        raise RescheduleTask()

    @staticmethod
    def _expectation(utterance, expect) -> Expectation:
        if expect is None or callable(expect):
            intent = utterance.expected_intent
        else:
            intent = str(expect)
        return Expectation(intent=intent, reply_check=utterance.reply_check, request_text=utterance.text,
                           check=expect if callable(expect) else None)

    def _name(self, utterance, name: str | None) -> str:
        if name:
            return name
        if self.config.stats_by == "intent":
            return utterance.expected_intent or "(any intent)"
        return utterance.id

    def _report(self, record: TurnRecord) -> None:
        """Report one ended turn: the turns file, the log, Locust's events."""
        self._open_turn = None
        self.turn_index += 1
        self.last_record = record if record.call_id else None
        self.runtime.sink.add(record)
        failure = record.failure
        if failure == RUN_STOPPED:
            return
        logbook = self.runtime.logbook
        if failure.startswith("connection"):
            logbook.error(self.runtime.explain_once(failure, record.failure_detail))
            return
        if failure == "harness_error":  # counted apart: never the gateway's failure in Locust's table
            logbook.error(f"User {self.number}, {record.utterance_id}: "
                          f"{self.runtime.explain_once(failure, record.failure_detail)}")
            return
        if failure:
            logbook.error(f"User {self.number}, {record.utterance_id}: "
                          f"{self.runtime.explain_once(failure, record.failure_detail)}")
        else:
            logbook.log("success", f"Intent received: {record.intent}", echo=False)
            logbook.log("info", f"Roundtrip completed: {record.roundtrip_ms:.0f}ms", echo=False)
        fire = self.environment.events.request.fire
        name = record.request_name
        failed_after = None if math.isnan(record.turn_ms) else record.turn_ms  # time to the deadline or the drop
        blamed = EVENT_OF_FAILURE.get(failure, "reply") if failure else ""
        # Locust groups its failures table by message: keep it to a bounded set (the details,
        # which quote what was said, are in the turns file and the log).
        message = _headline(failure)
        if failure == "wrong_intent":
            message += f" (expected {record.expected_intent}, got {record.intent})"
        # Each timing measured fires its event; the turn's failure, if any, fails exactly one of
        # them (the one its diagnosis is about), so Locust's failures count failed turns.
        for kind, value_ms, length in (
            ("intent", record.intent_ms, 0),
            ("roundtrip", record.roundtrip_ms, record.chunks_received),
            ("audible", record.audible_ms, 0),
            ("reply", record.reply_ms, record.reply_audio_bytes),
        ):
            measured = not math.isnan(value_ms)
            if kind == blamed:
                fire(request_type=kind, name=name, response_time=value_ms if measured else failed_after,
                     response_length=length, exception=VoiceFailure(message), context={})
            elif measured:
                fire(request_type=kind, name=name, response_time=value_ms, response_length=length,
                     exception=None, context={})

    def on_stop(self) -> None:
        """The user is stopped: close the connection. A turn in progress was recorded when the stop
        reached it (run_turn ends it as run_stopped); one that had not reached the gateway yet is
        recorded here."""
        if self._open_turn is not None:
            utterance, context = self._open_turn
            self._report(interrupted_turn(context, judge.run_stopped("the run ended while connecting"),
                                          utterance).record)
        connection = self.connection
        if connection is not None:
            connection.close(protocol.CLOSE_GOING_AWAY, "user stopped")
            self.connection = None


def _headline(failure: str) -> str:
    diagnosis = diagnoses.DIAGNOSES.get(failure)
    if diagnosis is None:
        return failure
    return f"{diagnosis.headline}: {diagnosis.finding}"
