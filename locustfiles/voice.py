"""Locust users that talk to a voice gateway the way the browser tester does.

Run it with the web UI::

    locust -f locustfiles/voice.py --host ws://127.0.0.1:7090

or headless::

    locust -f locustfiles/voice.py --host ws://127.0.0.1:7090 --headless -u 50 -r 10 -t 60s --csv results/run

Each simulated user holds one WebSocket connection, sends the JSON header, and runs turns:
it streams one corpus utterance at real-time pace, then trailing silence and/or the end
marker, and collects the reply. Every turn fires Locust request events — ``roundtrip``,
``intent``, ``reply`` per utterance, ``connect`` and ``ping`` per connection — and leaves one
row in ``PREFIX_turns.csv``.

The usage guide's four test scenarios are tags: ``--tags basic`` ("hello jarvis", checks
GREETING and the reply audio), ``stability`` (10 consecutive commands on one connection),
``recovery`` (turns through a gateway outage, reporting the time to recover) and
``performance`` (fast pace, with the worker's CPU and memory). Without ``--tags`` every
user runs the whole corpus (``corpus``) mixed with the scenarios.
"""

from __future__ import annotations

import gc
import itertools
import logging
import math
import random
import time

import gevent
import gevent.event
from locust import User, events, tag, task
from locust.exception import StopUser
from locust.runners import MasterRunner

from audio_corpus import check_reply, load_corpus
from locustfiles import voice_options, voice_records, voice_resources, voice_run_status
from locustfiles.voice_collector import COLLECTOR
from locustfiles.voice_connection import VoiceConnection
from locustfiles.voice_pacer import PACER
from voiceharness import diagnoses, protocol, uplink
from voiceharness.errors import ConnectionFailed, HarnessError
from voiceharness.live_stats import RUN_STOPPED
from voiceharness.logbook import Logbook
from voiceharness.settings import backoff_ms
from voiceharness.turns import TurnRecord

log = logging.getLogger("voice")

STABILITY_TURNS = 10  # the guide's stability scenario: 10 consecutive commands
BASIC_UTTERANCE_TEXT = "hello jarvis"


class VoiceFailure(Exception):
    """A failed turn as Locust shows it in its failures table (message = the diagnosis)."""


class _Process:
    """What every user of this process shares: configuration, corpus, log, records."""

    config: voice_options.VoiceRunConfig
    corpus = None
    basic = None
    logbook: Logbook
    explained: set[str] = set()
    user_numbers = itertools.count()


def _load_corpus(config: voice_options.VoiceRunConfig) -> None:
    """Load the run's utterances, and the "hello jarvis" ones of the basic scenario, once per process."""
    # The bundled corpus leaves its noisy copies out by default; a manifest of one's own is used whole.
    default_select = None if config.corpus_manifest else "kind:clean,kind:unknown"
    corpus = load_corpus(config.corpus_manifest or None, select=config.utterances or default_select)
    basic = [u for u in corpus if u.text.lower() == BASIC_UTTERANCE_TEXT]
    _Process.corpus = corpus
    _Process.basic = basic or [u for u in corpus if u.expected_intent == "GREETING"]


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None:  # imported by a tool, not run by Locust
        return
    try:
        config = voice_options.resolve(options)
        _Process.config = config
        if not isinstance(environment.runner, MasterRunner):
            # Load and validate the corpus before any user starts: a bad file fails the run now.
            _load_corpus(config)
            # Everything loaded so far (Locust, the corpus, the pre-framed audio) lives for the whole
            # run: keep it out of the collector's full passes, which paused 1,000 users for 26-46 ms.
            gc.collect()
            gc.freeze()
            # Once the users run, the collector pauses only on the harness's schedule (voice_collector).
            environment.events.spawning_complete.add_listener(lambda **_kw: COLLECTOR.hold())
            environment.events.test_stop.add_listener(lambda **_kw: COLLECTOR.release())
    except HarnessError as error:
        log.error("%s", error)
        environment.process_exit_code = 2
        if environment.runner is not None:
            environment.runner.quit()
        raise SystemExit(2) from None
    prefix = getattr(options, "csv_prefix", None)
    export_path = f"{prefix or 'voice'}_log.{config.log_export}" if config.log_export else None
    _Process.logbook = Logbook(log, export_path=export_path, export_format=config.log_export or "txt",
                               redact=config.redact)
    monitor = voice_resources.install(
        environment, config.settings, voice_records.WORKER_NAME,
        f"{prefix}_resources.csv" if prefix else None,
    )
    turn_sink = voice_records.install(environment, config.turns_file, monitor.rows)
    voice_run_status.install(environment, csv_prefix=prefix, turns_file=config.turns_file,
                             records=lambda: turn_sink.received, lateness=PACER.stats.summary,
                             worker_name=voice_records.WORKER_NAME)
    _Process.logbook.info(f"Voice harness: {config.settings.describe()}, pace {config.pace}, "
                          f"end marker {'on' if config.end_marker else 'off'}", echo=True)
    # gevent timers count from the loop's cached clock, last read before the imports and the
    # corpus load above: without a refresh, Locust's --run-time timer (armed next) fires early
    # by the time they took (seconds on a busy machine).
    gevent.get_hub().loop.update_now()


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    """Pick up options changed in the web UI's start form (pace, preset, utterances...)."""
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, MasterRunner):
        return
    if environment.host:  # a worker gets the master's --host here, never in options.host
        options.host = environment.host
    try:
        config = voice_options.resolve(options)
        if (config.utterances, config.corpus_manifest) != (_Process.config.utterances, _Process.config.corpus_manifest):
            _load_corpus(config)
        _Process.config = config
    except HarnessError as error:
        # The run is already starting: keep the previous settings and say why.
        log.error("options from the start form not applied: %s", error)


def _explain_once(code: str, detail: str) -> str:
    """The full causes-and-fixes text the first time a diagnosis is seen in this process."""
    if code not in _Process.explained:
        _Process.explained.add(code)
        return diagnoses.explain(code, detail)
    diagnosis = diagnoses.DIAGNOSES.get(code)
    headline = f"{diagnosis.headline}: {diagnosis.finding}" if diagnosis else code
    return f"{headline} ({detail})"


class VoiceUser(User):
    """A person at the browser tester: Connect, then say commands and wait for the answers."""

    def wait_time(self) -> float:
        """Seconds before the next turn: the reconnect backoff after a failed connection, else
        the think time (--think-time-ms)."""
        if self.retry_in_s is not None:
            delay, self.retry_in_s = self.retry_in_s, None
            return delay
        low, high = self.config.think_time_s
        return self.rng.uniform(low, high)

    def on_start(self) -> None:
        self.config = _Process.config
        self.number = next(_Process.user_numbers)
        self.rng = random.Random()
        self.utterances = itertools.cycle(self._shuffled(_Process.corpus))
        self.connection: VoiceConnection | None = None
        self.turn_index = 0
        self.turns_on_connection = 0
        self.reconnections = 0
        self.ever_connected = False
        self.failed_connects = 0
        self.outage_started: float | None = None
        self.turn_done = gevent.event.AsyncResult()
        self.reply_text = ""
        self.retry_in_s: float | None = None
        self.pending_connect_ms = math.nan
        self.current_scenario = ""
        self.current_pace = self.config.pace
        self._open_turn: tuple | None = None  # (utterance, scenario, pace, started_wall) until recorded

    def _shuffled(self, corpus) -> list:
        items = list(corpus)
        self.rng.shuffle(items)
        return items

    # -- connection handling
    def _connect(self) -> None:
        """Open a connection, or raise ConnectionFailed / StopUser after maxRetries."""
        settings = self.config.settings
        session = protocol.ClientSession(
            reply_timeout_s=self.config.reply_timeout_s, reply_gap_s=self.config.reply_gap_s
        )
        connection = VoiceConnection(settings, self.config.connect, session, self._on_event)
        try:
            connection.open()
        except ConnectionFailed as failure:
            self.environment.events.request.fire(
                request_type="connect", name="connect", response_time=0, response_length=0,
                exception=VoiceFailure(f"{diagnoses.DIAGNOSES[failure.diagnosis].finding}: {failure}"),
                context={},
            )
            self.failed_connects += 1
            if self.outage_started is None:
                self.outage_started = time.monotonic()
            raise
        self.environment.events.request.fire(
            request_type="connect", name="connect", response_time=connection.connect_ms,
            response_length=0, exception=None, context={},
        )
        if self.ever_connected:
            self.reconnections += 1
        if self.outage_started is not None and self.ever_connected:
            recovery_ms = (time.monotonic() - self.outage_started) * 1000
            _Process.logbook.success(f"Recovered after {recovery_ms:.0f} ms and {self.failed_connects} failed attempts")
            self.environment.events.request.fire(
                request_type="recovery", name="time to recover", response_time=recovery_ms,
                response_length=self.failed_connects, exception=None, context={},
            )
        self.outage_started = None
        self.failed_connects = 0
        self.ever_connected = True
        self.connection = connection
        self.turns_on_connection = 0
        self.pending_connect_ms = connection.connect_ms
        _Process.logbook.log("success", f"WebSocket connected successfully ({connection.connect_ms:.1f} ms)", echo=False)

    def _on_event(self, event: object) -> None:
        if isinstance(event, protocol.PingMeasured):
            self.environment.events.request.fire(
                request_type="ping", name="ping", response_time=event.ping_ms, response_length=0,
                exception=None, context={},
            )
        elif isinstance(event, protocol.ReplyMetadata):
            self.reply_text = event.reply_text
        elif isinstance(event, protocol.TurnEnded):
            if not self.turn_done.ready():
                self.turn_done.set(event.record)

    def _ensure_connection(self) -> None:
        connection = self.connection
        if connection is not None and connection.is_open:
            limit = self.config.turns_per_connection
            if not limit or self.turns_on_connection < limit:
                return
            connection.close(protocol.CLOSE_NORMAL, "turns per connection reached")
        if connection is not None and not connection.closed_cleanly and self.outage_started is None:
            self.outage_started = time.monotonic()
        self.connection = None
        self._connect()

    # -- turns
    def run_turn(self, utterance, *, scenario: str, pace: str | None = None) -> TurnRecord:
        """One turn: connect if needed, stream ``utterance``, collect the reply, report it."""
        try:
            return self._run_turn(utterance, scenario=scenario, pace=pace)
        except KeyboardInterrupt:
            # Ctrl-C lands in whichever greenlet runs; Locust's User.run does not call on_stop
            # for it, so record the turn in progress (run_stopped) before passing it on.
            self.on_stop()
            raise

    def _run_turn(self, utterance, *, scenario: str, pace: str | None) -> TurnRecord:
        pace = pace or self.config.pace
        started_wall = time.time()
        self.turn_done = gevent.event.AsyncResult()
        self.reply_text = ""
        # From here on the turn ends in exactly one record: _finish, or on_stop if the run ends first.
        voice_run_status.turn_started()
        self._open_turn = (utterance, scenario, pace, started_wall)
        self.current_scenario, self.current_pace = scenario, pace
        self._current_utterance = utterance
        try:
            self._ensure_connection()
        except ConnectionFailed as failure:
            record = self._base_record(utterance, scenario, pace, started_wall)
            record.failure, record.failure_detail = failure.diagnosis, str(failure)
            give_up = not failure.retryable or self.failed_connects > self.config.settings.max_retries
            if give_up and failure.retryable:
                record.failure = "connection_gave_up"
                record.failure_detail = f"{self.failed_connects} failed attempts; last: {failure.diagnosis}: {failure}"
            self._finish(record)
            if give_up:
                _Process.logbook.error(f"User {self.number} stops: {_explain_once(record.failure, record.failure_detail)}")
                raise StopUser()
            # The reconnect backoff replaces the think time before the next attempt.
            self.retry_in_s = backoff_ms(self.failed_connects - 1, self.rng) / 1000
            return record
        connection = self.connection
        assert connection is not None
        session = connection.session
        chunk = self.config.settings.chunk_samples
        frames = utterance.frames(chunk)
        session.begin_turn(
            utterance_id=utterance.id,
            expected_intent=utterance.expected_intent,
            speech_end_frame=utterance.speech_end_frame(chunk),
            now=time.monotonic(),
            speech_ms=utterance.duration_ms,
        )
        try:
            self._stream(connection, frames, pace)
            # What the socket took but the link has not carried yet: the roundtrip includes it.
            backlog_ms = uplink.backlog_ms(connection.unsent_bytes(), chunk)
            marker = session.end_utterance(time.monotonic(), send_marker=self.config.end_marker,
                                           uplink_backlog_ms=backlog_ms)
            if marker is not None:
                if self.config.send_path == "pacer":  # the same bytes every turn: framed once per process
                    connection.send_preframed(PACER.preframer.text(marker))
                else:
                    connection.send_text(marker)
        except (ConnectionError, OSError, Exception) as error:  # the socket died while streaming
            if not connection.closed.is_set():
                connection._lost(None, f"send failed: {error}")
        record = self._await_turn(session)
        if record.success and utterance.reply_check:
            # The gateway answered the right intent; does the reply say what it should (ECHO's words)?
            problem = check_reply(utterance, record.intent, self.reply_text)
            if problem:
                record.success, record.failure, record.failure_detail = False, "wrong_reply", problem
        self._fill(record, utterance, scenario, pace, started_wall, connection)
        self.turns_on_connection += 1
        self._finish(record)
        if connection.closed.is_set() and not connection.closed_cleanly:
            # Like the browser tester, reconnect on an unclean close after the first backoff step,
            # not after a person's think time.
            self.retry_in_s = backoff_ms(0, self.rng) / 1000
        return record

    def _stream(self, connection: VoiceConnection, frames, pace: str) -> None:
        session = connection.session
        frame_s = self.config.settings.chunk_samples / 16000
        silence_frames = math.ceil(self.config.trailing_silence_ms / 1000 / frame_s)
        if pace != "fast" and self.config.send_path == "pacer":
            # One process-wide greenlet sends the pre-framed frames of every stream.
            PACER.stream(connection, PACER.frames_for(frames, self.config.settings.chunk_samples, silence_frames), frame_s)
            return
        silence = bytes(self.config.settings.chunk_samples * 2)
        sequence = itertools.chain(frames, itertools.repeat(silence, silence_frames))
        clock = time.monotonic
        if pace == "fast":
            for index, frame in enumerate(sequence):
                connection.send_audio(frame)
                session.audio_sent(clock())
                if index % 16 == 15:
                    gevent.sleep(0)
            return
        start = clock()
        for index, frame in enumerate(sequence):
            due = start + index * frame_s
            wait = due - clock()
            if wait > 0:
                gevent.sleep(wait)
            connection.send_audio(frame)
            session.audio_sent(clock(), due)
            if connection.closed.is_set():
                raise ConnectionError("connection closed while streaming")

    def _await_turn(self, session: protocol.ClientSession) -> TurnRecord:
        while True:
            if self.turn_done.ready():
                return self.turn_done.get()
            deadline = session.next_deadline()
            timeout = 0.05 if deadline is None else max(0.0, deadline - time.monotonic()) + 0.001
            self.turn_done.wait(timeout)
            if not self.turn_done.ready():
                for event in session.poll(time.monotonic()):
                    self._on_event(event)

    def _base_record(self, utterance, scenario: str, pace: str, started_wall: float) -> TurnRecord:
        return TurnRecord(
            timestamp=started_wall,
            worker=voice_records.WORKER_NAME,
            user=self.number,
            turn_index=self.turn_index,
            scenario=scenario,
            utterance_id=utterance.id,
            expected_intent=utterance.expected_intent,
            reconnections=self.reconnections,
            pace=pace,
        )

    def _fill(self, record: TurnRecord, utterance, scenario, pace, started_wall, connection) -> None:
        record.timestamp = started_wall
        record.worker = voice_records.WORKER_NAME
        record.user = self.number
        record.turn_index = self.turn_index
        record.scenario = scenario
        record.pace = pace
        record.reconnections = self.reconnections
        record.connect_ms, self.pending_connect_ms = self.pending_connect_ms, math.nan
        record.transcript = _Process.logbook.transcript(record.transcript)

    def _finish(self, record: TurnRecord) -> None:
        """Report one ended turn: Locust events, the log, the turns file."""
        self._open_turn = None
        self.turn_index += 1
        voice_records.sink().add(record)
        if record.failure == RUN_STOPPED:
            return
        name = record.utterance_id if self.config.stats_by == "utterance" else record.expected_intent
        fire = self.environment.events.request.fire
        failure = record.failure
        if failure.startswith("connection"):
            _Process.logbook.error(_explain_once(failure, record.failure_detail))
            return
        explanation = None
        if failure:
            explanation = _explain_once(failure, record.failure_detail)
            _Process.logbook.error(f"User {self.number}, {record.utterance_id}: {explanation}")
        else:
            _Process.logbook.log("success", f"Intent received: {record.intent}", echo=False)
            _Process.logbook.log("info", f"Roundtrip completed: {record.roundtrip_ms:.0f}ms", echo=False)
        intent_ok = bool(record.intent) and record.intent == record.expected_intent
        intent_message = (
            f"expected {record.expected_intent}, got {record.intent}" if record.intent else
            f"{diagnoses.DIAGNOSES[failure].headline}: {diagnoses.DIAGNOSES[failure].finding}" if failure in diagnoses.DIAGNOSES
            else failure
        )
        fire(request_type="intent", name=name,
             response_time=record.intent_ms if not math.isnan(record.intent_ms) else 0.0,
             response_length=0, exception=None if intent_ok else VoiceFailure(intent_message), context={})
        if not math.isnan(record.roundtrip_ms):
            fire(request_type="roundtrip", name=name, response_time=record.roundtrip_ms,
                 response_length=record.chunks_received, exception=None, context={})
        elif intent_ok and failure:
            diagnosis = diagnoses.DIAGNOSES.get(failure)
            fire(request_type="roundtrip", name=name, response_time=0.0, response_length=0,
                 exception=VoiceFailure(f"{diagnosis.headline}: {diagnosis.finding}" if diagnosis else failure),
                 context={})
        if not math.isnan(record.reply_ms):
            fire(request_type="reply", name=name, response_time=record.reply_ms,
                 response_length=record.reply_audio_bytes,
                 exception=None if record.reply_complete else VoiceFailure("reply incomplete"), context={})

    def on_stop(self) -> None:
        """The user is stopped (run end, Ctrl-C, worker quit): record the turn in progress, close."""
        connection = self.connection
        open_turn = getattr(self, "_open_turn", None)
        if open_turn is not None:
            utterance, scenario, pace, started_wall = open_turn
            record = None
            if connection is not None:
                for event in connection.session.abandon_turn(time.monotonic(), RUN_STOPPED,
                                                             "the run ended during the turn"):
                    if isinstance(event, protocol.TurnEnded):
                        record = event.record
            if record is None and self.turn_done.ready():
                record = self.turn_done.get()  # it had ended on its own (a drop, say) but was not reported yet
            if record is None:  # stopped while connecting, before the session had a turn
                record = self._base_record(utterance, scenario, pace, started_wall)
                record.failure, record.failure_detail = RUN_STOPPED, "the run ended while connecting"
            if connection is not None:
                self._fill(record, utterance, scenario, pace, started_wall, connection)
            self._finish(record)
        if connection is None:
            return
        connection.close(protocol.CLOSE_GOING_AWAY, "user stopped")
        self.connection = None

    # -- the guide's scenarios
    @tag("corpus")
    @task(4)
    def corpus_turn(self) -> None:
        """Say the next corpus utterance."""
        self.run_turn(next(self.utterances), scenario="corpus")

    @tag("basic")
    @task(1)
    def basic(self) -> None:
        """Scenario 1: say "hello jarvis", check GREETING and the reply audio."""
        self.run_turn(self.rng.choice(_Process.basic), scenario="basic")

    @tag("stability")
    @task(1)
    def stability(self) -> None:
        """Scenario 2: 10 consecutive commands on one connection."""
        for _ in range(STABILITY_TURNS):
            record = self.run_turn(next(self.utterances), scenario="stability")
            if record.failure.startswith("connection"):
                return
            gevent.sleep(self.rng.uniform(0.1, 0.3))

    @tag("recovery")
    @task(1)
    def recovery(self) -> None:
        """Scenario 3: keep talking through a gateway outage; recovery time is a 'recovery' event."""
        self.run_turn(self.rng.choice(_Process.basic), scenario="recovery")

    @tag("performance")
    @task(1)
    def performance(self) -> None:
        """Scenario 4: fast commands; the process's CPU and memory are sampled as it runs."""
        self.run_turn(next(self.utterances), scenario="performance", pace="fast")
