"""The reference voice-gateway's I/O: WebSocket sessions, HTTP probes, and the pipeline off the loop.

The protocol rules live in the wire dialect (:mod:`gateway.dialects`: ``reference`` uses
:class:`voiceharness.protocol.ServerSession` and :func:`~voiceharness.protocol.reply_messages`,
``smartjarvis`` its own session and one WAV message per reply); this module moves messages
between a ``websockets`` connection and those objects. One connection is one
:class:`_Session` with two tasks::

    socket --reader--> ServerSession --audio/end--> _FrameQueue (50, drop oldest)
          --assembler--> Endpointer --utterance--> runner (worker process/thread) --> reply frames

* :class:`Gateway` owns the ``websockets`` server, the HTTP answers given in
  ``process_request`` (``/healthz``, ``/readyz``, ``/metrics``, 404, 401, fault statuses),
  the event-loop lag watch and the pipeline runner.
* Runners run ``pipeline.process(pcm, 16000, forced_intent=..., tts_enabled=...)`` off the event
  loop: :class:`ProcessRunner` (default: pocketsphinx holds the GIL while it decodes, measured
  at 230 ms of loop lag in a thread), :class:`ThreadRunner` (a pipeline object, as tests pass
  one), :class:`FastSinkRunner` (``--fast-sink``: a fixed answer, no pipeline at all).
* ``--conformance-echo`` replaces the voice session with an echo of every message, for
  Autobahn|Testsuite (``scripts/autobahn.sh``); the server and its options stay the same.

Every reply is timed as the SmartJARVIS gateway times it: ``voice_roundtrip_ms`` = last audio
message received on the session -> the reply's first message sent; it is a field of the
``turn`` log line and the ``voice_roundtrip_ms`` histogram in ``/metrics``.

Log events (``event=...``, with ``session=<sessionId>`` where there is one): listening,
ready, upgrade_refused, session_start, session_taken_over, header_rejected, protocol_error,
utterance, end_marker_ignored, queue_drop, turn, turn_failed, reply_undelivered,
fault_close, session_end, loop_lag, shutdown.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hmac
import importlib
import inspect
import logging
import math
import multiprocessing
import os
import signal
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from http import HTTPStatus
from typing import Any, Protocol, Self

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from gateway.config import GatewayConfig
from gateway.dialects import Reply, ReplyFormat
from gateway.endpointer import Endpointer, Utterance
from gateway.faults import CLOSE_ABORT, shape_reply_audio, wrong_intent_for
from gateway.metrics import CONTENT_TYPE, GatewayMetrics
from gateway.pipeline import TurnResult
from gateway.synthesizer import resample_pcm16
from voiceharness import guide
from voiceharness.protocol import AudioReceived, EndMarker, HeaderAccepted, ProtocolError

log = logging.getLogger("gateway")

LOOP_LAG_INTERVAL_S = 0.02
LOOP_LAG_LOG_EVERY_S = 10.0
LOOP_LAG_WARN_MS = 50.0  # the requirement: with 50 sessions the loop never blocks longer
FAST_SINK_REPLY_MS = 100


def _event(level: int, event: str, **fields: Any) -> None:
    if log.isEnabledFor(level):
        log.log(level, event, extra={"fields": fields})


# ----------------------------------------------------------------------------- runners


class TurnResultLike(Protocol):
    """What ``gateway.pipeline.TurnResult`` provides; the server reads nothing else.

    It also reads ``sample_rate_hz`` (the rate of ``audio_pcm``) where a result has it, and
    takes 16 kHz where it does not.
    """

    intent: str
    confidence: float
    transcript: str
    slots: dict[str, Any]
    reply_text: str
    audio_pcm: bytes
    recognize_ms: float
    nlu_ms: float
    synth_ms: float


class Runner(Protocol):
    def check(self) -> None: ...
    async def start(self) -> None: ...
    async def process(
        self, pcm: bytes, *, forced_intent: str | None, tts_enabled: bool
    ) -> TurnResultLike: ...
    def shutdown(self) -> None: ...


def load_factory(spec: str) -> Callable[[], Any]:
    """``"package.module:Name"`` -> the object it names (a class or a function returning a pipeline)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"pipeline spec must look like module:Class, got {spec!r}")
    return getattr(importlib.import_module(module_name), attribute)


_worker_pipeline: Any = None


def _init_worker(spec: str, nice: int, options: dict[str, Any]) -> None:
    """Runs once in each worker process: ignore Ctrl-C (the parent shuts us down), yield CPU to the loop, load."""
    global _worker_pipeline
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # Workers are CPU-bound; the event loop's process must win the CPU the moment it
        # wakes, or every session's loop lag grows while recognition runs.
        os.nice(nice)
    except OSError:
        pass
    _worker_pipeline = _build_pipeline(spec, options)


def _accepted_options(factory: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    """The ``options`` that ``factory`` takes as keywords: a pipeline without a reply style or
    rate is built as before (the server resamples its audio to the reply rate)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(options)
    names = {p.name for p in parameters if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    return {key: value for key, value in options.items() if key in names}


def _build_pipeline(spec: str, options: dict[str, Any] | None = None) -> Any:
    """Build the pipeline ``spec`` names with the ``options`` it takes, and warm it (first decoder, reply cache) if it can be."""
    factory = load_factory(spec)
    pipeline = factory(**_accepted_options(factory, options or {}))
    warm_up = getattr(pipeline, "warm_up", None)
    if callable(warm_up):
        warm_up()
    return pipeline


def _worker_process(pcm: bytes, sample_rate_hz: int, forced_intent: str | None, tts_enabled: bool) -> Any:
    return _worker_pipeline.process(pcm, sample_rate_hz, forced_intent=forced_intent, tts_enabled=tts_enabled)


def _worker_ready(hold_s: float) -> int:
    time.sleep(hold_s)  # keep this worker busy so the next call reaches another one
    return os.getpid()


class ProcessRunner:
    """The pipeline in worker processes, one pipeline per process, built by ``spec``."""

    def check(self) -> None:
        """Import the pipeline here once, so a wrong spec fails with its own error, not BrokenProcessPool.

        Called before the server listens: an import holds the GIL for a second and would
        show as event-loop lag if done beside a running loop.
        """
        load_factory(self.spec)

    def __init__(
        self, spec: str, workers: int, *, nice: int = 10, options: dict[str, Any] | None = None
    ) -> None:
        self.spec = spec
        self.workers = workers
        # spawn, not fork: the parent runs an event loop and threads that must not be copied.
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(spec, nice, dict(options or {})),
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Calls that hold a worker for a moment make the pool start them all; ready means every
        # worker has loaded its model (its initializer ran) and answered.
        pids: set[int] = set()
        while len(pids) < self.workers:
            answered = await asyncio.gather(
                *(loop.run_in_executor(self._executor, _worker_ready, 0.05) for _ in range(self.workers))
            )
            pids.update(answered)
        _event(logging.DEBUG, "workers_started", pids=",".join(map(str, sorted(pids))))

    async def process(self, pcm: bytes, *, forced_intent: str | None, tts_enabled: bool) -> TurnResultLike:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, _worker_process, pcm, guide.SAMPLE_RATE_HZ, forced_intent, tts_enabled
        )

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class ThreadRunner:
    """The pipeline in a thread pool: for a pipeline object (tests) or one that releases the GIL."""

    def __init__(
        self, pipeline: Any = None, *, spec: str = "", workers: int = 4, options: dict[str, Any] | None = None
    ) -> None:
        self._pipeline = pipeline
        self._spec = spec
        self._options = dict(options or {})
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="pipeline"
        )

    def check(self) -> None:
        if self._pipeline is None:
            load_factory(self._spec)

    async def start(self) -> None:
        if self._pipeline is None:
            loop = asyncio.get_running_loop()
            self._pipeline = await loop.run_in_executor(
                self._executor, _build_pipeline, self._spec, self._options
            )

    async def process(self, pcm: bytes, *, forced_intent: str | None, tts_enabled: bool) -> TurnResultLike:
        loop = asyncio.get_running_loop()
        call = functools.partial(
            self._pipeline.process,
            pcm,
            guide.SAMPLE_RATE_HZ,
            forced_intent=forced_intent,
            tts_enabled=tts_enabled,
        )
        return await loop.run_in_executor(self._executor, call)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def tone_pcm(duration_ms: float, frequency_hz: float = 440.0, level_dbfs: float = -20.0) -> bytes:
    """A sine tone as PCM16 mono 16 kHz (the fast sink's reply audio)."""
    count = int(guide.SAMPLE_RATE_HZ * duration_ms / 1000)
    t = np.arange(count) / guide.SAMPLE_RATE_HZ
    amplitude = 32767 * 10 ** (level_dbfs / 20)
    return (amplitude * np.sin(2 * np.pi * frequency_hz * t)).astype("<i2").tobytes()


class FastSinkRunner:
    """``--fast-sink``: answer at once with fixed metadata and a short tone, on the loop (it costs nothing)."""

    def __init__(self, intent: str) -> None:
        self._result = TurnResult(
            intent=intent, confidence=1.0, transcript="", reply_text="fast sink",
            audio_pcm=tone_pcm(FAST_SINK_REPLY_MS),
        )

    def check(self) -> None:
        return None

    async def start(self) -> None:
        return None

    async def process(self, pcm: bytes, *, forced_intent: str | None, tts_enabled: bool) -> TurnResultLike:
        if forced_intent or not tts_enabled:
            return replace(
                self._result,
                intent=forced_intent or self._result.intent,
                audio_pcm=self._result.audio_pcm if tts_enabled else b"",
            )
        return self._result

    def shutdown(self) -> None:
        return None


def make_runner(config: GatewayConfig, pipeline: Any = None) -> Runner:
    if pipeline is not None:
        return ThreadRunner(pipeline, workers=config.workers)
    if config.fast_sink or config.conformance_echo:
        return FastSinkRunner(config.fast_sink_intent)
    options = config.pipeline_options
    if config.executor == "thread":
        return ThreadRunner(spec=config.pipeline, workers=config.workers, options=options)
    return ProcessRunner(config.pipeline, config.workers, nice=config.worker_nice, options=options)


# ----------------------------------------------------------------------------- the queue

_END = object()  # the end marker's place in the queue


class _FrameQueue:
    """The bounded queue between a session's reader and its assembler.

    When full, the oldest *audio* frame is dropped (an end marker is kept: losing it would
    lose a whole reply, losing 64 ms of audio loses a syllable at worst).
    """

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._items: deque[object] = deque()
        self._ready = asyncio.Event()
        self._load_failed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: object) -> bool:
        """Append; return True when an audio frame had to be dropped to make room."""
        dropped = False
        if len(self._items) >= self.max_items:
            for index, old in enumerate(self._items):
                if old is not _END:
                    del self._items[index]
                    dropped = True
                    break
            else:
                self._items.popleft()
        self._items.append(item)
        self._ready.set()
        return dropped

    async def get(self) -> object:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


# ----------------------------------------------------------------------------- sessions


class _Session:
    """One WebSocket connection: header, then audio and markers, then replies."""

    def __init__(self, gateway: Gateway, connection: ServerConnection) -> None:
        self.gateway = gateway
        self.config = gateway.config
        self.metrics = gateway.metrics
        self.ws = connection
        self.protocol = self.config.wire.new_session()
        self.queue = _FrameQueue(self.config.queue_frames)
        self.endpointer = Endpointer(
            silence_ms=self.config.vad_silence_ms,
            min_speech_ms=self.config.vad_min_speech_ms,
            max_utterance_ms=self.config.vad_max_utterance_ms,
            threshold_db=self.config.vad_threshold_db,
        )
        self.session_id = "-"  # for logs (at most 64 characters)
        self.session_key = ""  # the header's whole sessionId: replies are routed by it
        self.correlation_id: str | None = None
        self.last_audio_at = time.monotonic()  # of the last audio message: voice_roundtrip_ms starts here
        self.end_marker_at = math.nan  # when the latest end marker arrived
        self.reply_sent_at = math.nan  # when the latest reply's first message went out
        self.frames = 0
        self.dropped = 0
        self.turns = 0
        self.close_code: int | None = None

    def _event(self, level: int, event: str, **fields: Any) -> None:
        _event(level, event, session=self.session_id, **fields)

    async def run(self) -> None:
        remote = self.ws.remote_address
        peer = f"{remote[0]}:{remote[1]}" if remote else "-"
        started = time.monotonic()
        assembler: asyncio.Task[None] | None = None
        try:
            if not await self._read_header(peer):
                return
            if not self.config.faults.broker_down:
                assembler = asyncio.create_task(self._assemble(), name=f"assembler {self.session_id}")
            await self._read_audio()
        except ConnectionClosed:
            pass
        finally:
            if self.session_key:
                self.gateway.release_session_id(self.session_key, self)
            if assembler is not None:
                assembler.cancel()
                try:
                    await assembler
                except (asyncio.CancelledError, ConnectionClosed):
                    pass
                except Exception:  # noqa: BLE001 (logged; the session ends either way)
                    self._event(logging.ERROR, "assembler_failed", exc_info=True)
            self.protocol.close()
            received = self.ws.protocol.close_rcvd.code if self.ws.protocol.close_rcvd else None
            sent = self.ws.protocol.close_sent.code if self.ws.protocol.close_sent else None
            self._event(
                logging.INFO,
                "session_end",
                close_code=received if received is not None else (sent if sent is not None else 1006),
                frames=self.frames,
                dropped=self.dropped,
                turns=self.turns,
                duration_s=round(time.monotonic() - started, 3),
            )

    async def _read_header(self, peer: str) -> bool:
        try:
            async with asyncio.timeout(self.config.header_timeout_s):
                first = await self.ws.recv()
        except TimeoutError:
            await self._close(1008, f"no header within {self.config.header_timeout_s:g} s")
            _event(logging.WARNING, "header_rejected", peer=peer, reason="timeout")
            return False
        for event in self.protocol.receive(first):
            if isinstance(event, ProtocolError):
                _event(
                    logging.WARNING, "header_rejected", peer=peer, code=event.close_code, reason=event.reason
                )
                self.metrics.protocol_errors.labels(str(event.close_code)).inc()
                await self._close(event.close_code, event.reason)
                return False
            if isinstance(event, HeaderAccepted):
                self.session_id = event.header.session_id[:64]
                self.session_key = event.header.session_id
                self.correlation_id = event.header.correlation_id
                taken_from = self.gateway.claim_session_id(self.session_key, self)
                if taken_from is not None:
                    # The SmartJARVIS gateway keys sessions by sessionId: the newest connection
                    # gets the replies, the older one goes on streaming to no one.
                    self._event(logging.WARNING, "session_taken_over", peer=peer)
                self._event(
                    logging.INFO,
                    "session_start",
                    peer=peer,
                    path=self.ws.request.path.split("?", 1)[0] if self.ws.request else "-",
                    correlation=self.correlation_id[:64],
                    header_frame="text" if isinstance(first, str) else "binary",
                )
        return True

    async def _read_audio(self) -> None:
        close_after = self.config.faults.close_after_frames
        broker_down = self.config.faults.broker_down
        async for message in self.ws:
            for event in self.protocol.receive(message):
                if isinstance(event, AudioReceived):
                    self.last_audio_at = time.monotonic()
                    self.frames += 1
                    self.metrics.frames_received.inc()
                    if not broker_down and self.queue.put(event.pcm):
                        self._dropped_one()
                    if close_after and self.frames >= close_after:
                        await self._fault_close()
                        return
                elif isinstance(event, EndMarker):
                    self.end_marker_at = time.monotonic()
                    self.queue.put(_END)
                elif isinstance(event, ProtocolError):
                    self._event(logging.WARNING, "protocol_error", code=event.close_code, reason=event.reason)
                    self.metrics.protocol_errors.labels(str(event.close_code)).inc()
                    await self._close(event.close_code, event.reason)
                    return

    def _dropped_one(self) -> None:
        self.dropped += 1
        self.metrics.queue_drops.inc()
        # The first drop and then every 50th: a slow pipeline must not also flood the log.
        if self.dropped == 1 or self.dropped % 50 == 0:
            self._event(
                logging.WARNING, "queue_drop", dropped=self.dropped, queue_frames=self.queue.max_items
            )

    async def _send_reply(self, messages: list[str | bytes]) -> float | None:
        """Send one reply to the connection that gets it; return its voice_roundtrip_ms, or None if none was sent."""
        if not messages:
            return None
        target = self.gateway.reply_target(self)
        if target is None:
            self._event(logging.WARNING, "reply_undelivered", reason="no open connection has this sessionId")
            return None
        try:
            # Stamped as the reply is handed over: a stamp taken after the await would also count
            # whatever else this event loop ran before it came back here.
            self.reply_sent_at = time.monotonic()
            await target.ws.send(messages[0])
            roundtrip_ms = (time.monotonic() - self.last_audio_at) * 1000.0
            for message in messages[1:]:
                await target.ws.send(message)
        except ConnectionClosed:
            if target is self:
                raise
            self._event(logging.WARNING, "reply_undelivered", reason="the connection taking the replies closed")
            return None
        return roundtrip_ms

    async def _fault_close(self) -> None:
        code = self.config.faults.close_code
        self._event(logging.INFO, "fault_close", frames=self.frames, code=code)
        if code == CLOSE_ABORT:
            self.ws.transport.abort()
        else:
            await self._close(code, f"fault: closed after {self.frames} audio frames")

    async def _close(self, code: int, reason: str) -> None:
        self.close_code = code
        # A close reason must fit in a control frame (123 bytes of UTF-8).
        await self.ws.close(code, reason.encode("utf-8")[:123].decode("utf-8", "ignore"))

    # -- the assembler: endpointing and turns, one at a time per session
    async def _assemble(self) -> None:
        try:
            await self._assemble_forever()
        except (asyncio.CancelledError, ConnectionClosed):
            raise
        except Exception:  # noqa: BLE001 (any bug: logged, then the session is closed)
            # A bug here must not leave a deaf session behind: say so and close.
            self._event(logging.ERROR, "assembler_failed", exc_info=True)
            await self._close(1011, "internal error in the gateway")

    async def _assemble_forever(self) -> None:
        while True:
            item = await self.queue.get()
            if item is _END:
                utterance = self.endpointer.end_marker()
                if utterance is None:
                    self._event(logging.DEBUG, "end_marker_ignored", reason="no audio since the last reply")
                    continue
                utterances = [utterance]
            else:
                assert isinstance(item, bytes)
                utterances = self.endpointer.feed(item)
            for utterance in utterances:
                await self._turn(utterance)

    async def _turn(self, utterance: Utterance) -> None:
        self.turns += 1
        turn = self.turns
        started = time.perf_counter()
        # The utterance ended when its end marker arrived, or when the endpointer heard enough silence (now).
        ended_at = self.end_marker_at if utterance.reason == "marker" else time.monotonic()
        self.metrics.utterances.labels(utterance.reason).inc()
        self._event(
            logging.DEBUG,
            "utterance",
            turn=turn,
            reason=utterance.reason,
            audio_ms=round(utterance.duration_ms),
            speech_ms=round(utterance.speech_ms),
        )
        faults = self.config.faults
        try:
            await self.gateway.wait_ready()
            result = await self.gateway.runner.process(
                utterance.pcm,
                forced_intent=faults.wrong_intent_forced or None,
                tts_enabled=not faults.no_audio,
            )
        except Exception as error:  # noqa: BLE001 (one bad turn must not end the session)
            self.metrics.turn_errors.inc()
            self._event(logging.ERROR, "turn_failed", turn=turn, error=f"{type(error).__name__}: {error}")
            return
        delay_ms = faults.reply_delay_ms(self.gateway.sessions_active)
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000.0)
        intent = result.intent
        if faults.wrong_intent and not faults.wrong_intent_forced:
            intent = wrong_intent_for(intent)
        rate_hz = self.config.reply_rate_hz
        audio = b""
        if not faults.no_audio and result.audio_pcm:
            produced_hz = int(getattr(result, "sample_rate_hz", guide.SAMPLE_RATE_HZ))
            audio = shape_reply_audio(resample_pcm16(result.audio_pcm, produced_hz, rate_hz), rate_hz, faults)
        reply = Reply(
            intent=intent,
            confidence=result.confidence if math.isfinite(result.confidence) else 0.0,
            transcript=result.transcript,
            slots=dict(result.slots),
            reply_text=result.reply_text,
            audio_pcm=audio,
            sample_rate_hz=rate_hz,
            correlation_id=self.correlation_id,
        )
        messages = self.config.wire.reply_messages(
            reply,
            ReplyFormat(
                wav=self.config.reply_wav,
                chunk_bytes=self.config.reply_chunk_bytes,
                json_as_binary=not self.config.json_text_frames,
                reply_end=self.config.reply_end,
            ),
        )
        roundtrip_ms = await self._send_reply(messages)
        total_ms = (time.perf_counter() - started) * 1000.0
        m = self.metrics
        m.turns.labels(intent).inc()
        m.observe_stage_ms("recognize", result.recognize_ms)
        m.observe_stage_ms("nlu", result.nlu_ms)
        m.observe_stage_ms("synth", result.synth_ms)
        m.observe_stage_ms("total", total_ms)
        if roundtrip_ms is not None:
            m.voice_roundtrip_ms.observe(roundtrip_ms)
        redact = self.config.redact_transcripts
        self._event(
            logging.INFO,
            "turn",
            turn=turn,
            reason=utterance.reason,
            audio_ms=round(utterance.duration_ms),
            intent=intent,
            confidence=round(float(result.confidence), 3),
            transcript=f"<{len(result.transcript)} chars>" if redact else result.transcript,
            reply_audio_ms=round(len(audio) / 2 * 1000 / rate_hz),
            voice_roundtrip_ms=round(roundtrip_ms, 1) if roundtrip_ms is not None else "-",
            # The gateway's own part of the harness's roundtrip: the utterance's end (its marker's
            # arrival, or the endpointer's decision) -> the reply's first message handed over.
            end_to_reply_ms=round((self.reply_sent_at - ended_at) * 1000.0, 1) if roundtrip_ms is not None else "-",
            recognize_ms=round(result.recognize_ms, 1),
            nlu_ms=round(result.nlu_ms, 1),
            synth_ms=round(result.synth_ms, 1),
            total_ms=round(total_ms, 1),
        )


# ----------------------------------------------------------------------------- the gateway


class Gateway:
    """The server: ``async with Gateway(config) as gateway: await gateway.wait_closed()``.

    ``pipeline`` (an object with ``process``) runs in threads; without it the pipeline named
    by ``config.pipeline`` is built in worker processes (or threads with
    ``config.executor == "thread"``), or the fast sink answers (``config.fast_sink``).
    """

    def __init__(
        self, config: GatewayConfig, *, pipeline: Any = None, metrics: GatewayMetrics | None = None
    ) -> None:
        self.config = config
        self.metrics = metrics or GatewayMetrics()
        self.runner = make_runner(config, pipeline)
        self.loop_lag_max_ms = 0.0
        self._server: Server | None = None
        self._sessions = 0
        self._ready = asyncio.Event()
        self._load_failed = False
        self._not_ready_reason = "model loading"
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._by_session_id: dict[str, _Session] = {}  # dialects that route replies by sessionId

    # -- lifecycle
    async def start(self) -> None:
        c = self.config
        try:
            self.runner.check()
        except Exception as error:  # noqa: BLE001 (reported by /readyz and the log)
            self._load_failed_with(error)
        self._server = await serve(
            self._handle,
            c.host,
            c.port,
            process_request=self._process_request,
            compression=None,  # PCM does not compress; the real gateway has permessage-deflate off
            ping_interval=c.ping_interval_s or None,
            ping_timeout=c.effective_ping_timeout_s,
            max_size=c.max_message_bytes,
            logger=logging.getLogger("websockets.server"),
        )
        self._tasks.append(asyncio.create_task(self._watch_loop_lag(), name="loop lag"))
        if not self._load_failed:
            self._tasks.append(asyncio.create_task(self._load(), name="load pipeline"))
        _event(
            logging.INFO,
            "listening",
            host=c.host,
            port=self.port,
            dialect=c.dialect,
            paths="any" if c.wire.accepts_any_path else ",".join(c.ws_paths),
            mode=(
                "conformance_echo"
                if c.conformance_echo
                else "fast_sink" if c.fast_sink else f"{type(self.runner).__name__}x{c.workers}"
            ),
            faults=c.faults.describe(),
            auth="token" if c.auth_token else "none",
        )

    async def _load(self) -> None:
        started = time.perf_counter()
        try:
            await self.runner.start()
        except Exception as error:  # noqa: BLE001 (reported by /readyz and the log)
            self._load_failed_with(error)
            return
        self._not_ready_reason = ""
        self._ready.set()
        self.metrics.ready.set(1)
        _event(logging.INFO, "ready", load_ms=round((time.perf_counter() - started) * 1000))

    def _load_failed_with(self, error: Exception) -> None:
        self._not_ready_reason = f"model failed to load: {type(error).__name__}: {error}"[:200]
        _event(logging.ERROR, "model_failed", error=self._not_ready_reason, exc_info=error)
        self._load_failed = True
        self._ready.set()  # wake waiting turns, which then fail

    async def wait_ready(self) -> None:
        """Wait for the model; a turn that arrives while it loads is answered late, not refused."""
        if not self._ready.is_set():
            await self._ready.wait()
        if self._load_failed:
            raise RuntimeError(self._not_ready_reason)

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.sockets[0].getsockname()[1]

    def close(self, code: int = 1001, reason: str = "gateway shutting down") -> None:
        """Stop accepting, close every session with ``code`` (1001 going away)."""
        if self._closing:
            return
        self._closing = True
        self.metrics.ready.set(0)
        _event(
            logging.INFO, "shutdown", sessions=self._sessions, loop_lag_max_ms=round(self.loop_lag_max_ms, 1)
        )
        if self._server is not None:
            self._server.close(close_connections=True, code=code, reason=reason)

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.runner.shutdown()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    # -- readiness
    def not_ready_reason(self) -> str:
        """Empty when ready; else why /readyz answers 503."""
        if self._closing:
            return "shutting down"
        if self._not_ready_reason:
            return self._not_ready_reason
        if not self._ready.is_set():
            return "model loading"
        if self._sessions >= self.config.max_sessions:
            return f"shedding load: {self._sessions} sessions, limit {self.config.max_sessions}"
        return ""

    # -- HTTP, before the upgrade
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urllib.parse.urlsplit(request.path)
        path = url.path
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            reason = self.not_ready_reason()
            if reason:
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {reason}\n")
            return connection.respond(HTTPStatus.OK, "ready\n")
        if path == "/metrics":
            response = connection.respond(HTTPStatus.OK, "")
            response.body = self.metrics.render()
            del response.headers["Content-Type"]
            del response.headers["Content-Length"]
            response.headers["Content-Type"] = CONTENT_TYPE
            response.headers["Content-Length"] = str(len(response.body))
            return response
        if path not in self.config.ws_paths and not self.config.wire.accepts_any_path:
            return self._refuse(
                connection,
                HTTPStatus.NOT_FOUND,
                f"no WebSocket at {path}; use {' or '.join(self.config.ws_paths)}",
            )
        if self.config.faults.refuse_status:
            return self._refuse(
                connection, self.config.faults.refuse_status, "fault: upgrade refused on purpose"
            )
        if self.config.auth_token and not self._authorized(request, url.query):
            response = self._refuse(connection, HTTPStatus.UNAUTHORIZED, "missing or wrong token")
            response.headers["WWW-Authenticate"] = 'Bearer realm="voice-gateway"'
            return response
        if self._closing or self._sessions >= self.config.max_sessions:
            return self._refuse(connection, HTTPStatus.SERVICE_UNAVAILABLE, self.not_ready_reason())
        return None

    def _refuse(self, connection: ServerConnection, status: int, reason: str) -> Response:
        self.metrics.upgrades_refused.labels(str(int(status))).inc()
        remote = connection.remote_address
        _event(
            logging.INFO,
            "upgrade_refused",
            status=int(status),
            path=connection.request.path.split("?", 1)[0] if connection.request else "-",
            peer=f"{remote[0]}:{remote[1]}" if remote else "-",
            reason=reason,
        )
        return connection.respond(status, reason + "\n")

    def _authorized(self, request: Request, query: str) -> bool:
        expected = self.config.auth_token.encode("utf-8")
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("utf-8"), expected):
            return True
        for value in urllib.parse.parse_qs(query).get("token", []):
            if hmac.compare_digest(value.encode("utf-8"), expected):
                return True
        return False

    # -- WebSocket sessions
    async def _handle(self, connection: ServerConnection) -> None:
        self._sessions += 1
        self.metrics.sessions_active.inc()
        self.metrics.sessions_total.inc()
        try:
            if self.config.conformance_echo:
                await self._echo(connection)
            else:
                await _Session(self, connection).run()
        finally:
            self._sessions -= 1
            self.metrics.sessions_active.dec()

    async def _echo(self, connection: ServerConnection) -> None:
        """``--conformance-echo``: send every message back as it came (text as text, binary as binary).

        Autobahn|Testsuite's fuzzingclient cases are echo cases; the voice protocol would close
        each of them with 1008 at its first message, testing nothing past the header check.
        Framing, UTF-8 validation, control frames and closing are done by ``websockets`` with
        the gateway's own server options, so this mode tests what the voice sessions run on.
        """
        try:
            async for message in connection:
                await connection.send(message)
        except ConnectionClosed:
            pass

    @property
    def sessions_active(self) -> int:
        return self._sessions

    # -- sessions keyed by sessionId (the smartjarvis dialect)
    def claim_session_id(self, session_id: str, session: _Session) -> _Session | None:
        """``session`` now takes the replies for ``session_id``; return the connection it took them from."""
        if not self.config.wire.replies_by_session_id:
            return None
        previous = self._by_session_id.get(session_id)
        self._by_session_id[session_id] = session
        return previous if previous is not session else None

    def release_session_id(self, session_id: str, session: _Session) -> None:
        if self._by_session_id.get(session_id) is session:
            del self._by_session_id[session_id]

    def reply_target(self, session: _Session) -> _Session | None:
        """The connection that gets ``session``'s replies: itself, or in a dialect that routes by
        sessionId the newest open connection with its sessionId (None when that one closed)."""
        if not self.config.wire.replies_by_session_id:
            return session
        return self._by_session_id.get(session.session_key)

    # -- event-loop lag
    async def _watch_loop_lag(self) -> None:
        """Sleep a short fixed interval and measure how late the loop wakes us: that is how long it was blocked."""
        loop = asyncio.get_running_loop()
        window_max_ms = 0.0
        window_started = loop.time()
        while True:
            before = loop.time()
            cpu_before = time.thread_time()  # this is the loop's thread
            await asyncio.sleep(LOOP_LAG_INTERVAL_S)
            now = loop.time()
            lag_s = max(0.0, now - before - LOOP_LAG_INTERVAL_S)
            self.metrics.loop_lag_seconds.observe(lag_s)
            lag_ms = lag_s * 1000.0
            window_max_ms = max(window_max_ms, lag_ms)
            if lag_ms >= LOOP_LAG_WARN_MS / 2:
                # Said at once, with what was going on, so a stall can be matched with its cause.
                _event(
                    logging.WARNING if lag_ms >= LOOP_LAG_WARN_MS else logging.INFO,
                    "loop_blocked",
                    lag_ms=round(lag_ms, 1),
                    # CPU the loop's thread used meanwhile: near lag_ms when the gateway's own
                    # code blocked it, near 0 when the process was starved of CPU or the GIL.
                    loop_cpu_ms=round((time.thread_time() - cpu_before) * 1000.0, 1),
                    sessions=self._sessions,
                )
            if lag_ms > self.loop_lag_max_ms:
                self.loop_lag_max_ms = lag_ms
                self.metrics.loop_lag_max_seconds.set(lag_s)
            if now - window_started >= LOOP_LAG_LOG_EVERY_S:
                if self._sessions or window_max_ms >= LOOP_LAG_WARN_MS:
                    _event(
                        logging.WARNING if window_max_ms >= LOOP_LAG_WARN_MS else logging.INFO,
                        "loop_lag",
                        window_max_ms=round(window_max_ms, 1),
                        max_ms=round(self.loop_lag_max_ms, 1),
                        sessions=self._sessions,
                    )
                window_max_ms = 0.0
                window_started = now
