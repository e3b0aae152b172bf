"""How the reference gateway is configured: its command-line options and its log lines.

:func:`parse_args` turns ``python -m gateway ...`` options into a :class:`GatewayConfig`;
:func:`configure_logging` sets up one-line-per-event logs, ``key=value`` by default or JSON
with ``--log-json``. Code that logs passes the event name as the message and its fields in
``extra={"fields": {...}}``; every session event carries ``session=<sessionId>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.dialects import DIALECTS, Dialect
from gateway.endpointer import WINDOW_MS as ENDPOINTER_WINDOW_MS
from gateway.faults import Faults, valid_close_code
from voiceharness import guide
from voiceharness.errors import UsageError

DEFAULT_PORT = 7090
DEFAULT_PIPELINE = "gateway.pipeline:VoicePipeline"
DEFAULT_PING_TIMEOUT_S = 20.0
REPLY_SAMPLE_RATES_HZ = (guide.SAMPLE_RATE_HZ, 22_050)


@dataclass(frozen=True)
class GatewayConfig:
    dialect: str = "reference"  # a key of gateway.dialects.DIALECTS
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    ws_paths: tuple[str, ...] = (guide.WS_PATH_GATEWAY, guide.WS_PATH_BROWSER_TESTER)
    ping_interval_s: float = guide.SERVER_PING_INTERVAL_S
    ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S  # not used by a dialect that never checks pongs
    max_message_bytes: int = 1 << 20
    header_timeout_s: float = 10.0
    queue_frames: int = guide.SESSION_QUEUE_FRAMES
    max_sessions: int = 1000
    # end of utterance
    vad_silence_ms: float = 500.0
    vad_min_speech_ms: float = 100.0
    vad_max_utterance_ms: float = 15_000.0
    vad_threshold_db: float = 12.0
    # the pipeline
    pipeline: str = DEFAULT_PIPELINE
    executor: str = "process"  # "process" or "thread"
    workers: int = 2
    worker_nice: int = 10
    fast_sink: bool = False
    fast_sink_intent: str = "GREETING"
    conformance_echo: bool = False
    # the reply
    reply_wav: bool = False
    reply_end: bool = True
    json_text_frames: bool = False
    reply_chunk_bytes: int = guide.CHUNK_BYTES
    reply_sample_rate_hz: int | None = None  # None: the dialect's (16000 reference, 22050 smartjarvis)
    phrasing_seed: int | None = None  # seeds the random choice of a reply's phrasing (None: the OS's)
    fixed_clock: str = ""  # "HH:MM": the time every time reply tells ("": the clock's)
    # access
    auth_token: str = ""
    faults: Faults = field(default_factory=Faults)
    # logs
    log_json: bool = False
    log_level: str = "INFO"
    redact_transcripts: bool = False

    @property
    def wire(self) -> Dialect:
        return DIALECTS[self.dialect]

    @property
    def reply_rate_hz(self) -> int:
        """The sample rate of the reply audio sent."""
        return self.reply_sample_rate_hz or self.wire.reply_sample_rate_hz

    @property
    def effective_ping_timeout_s(self) -> float | None:
        """None when pongs are not checked (the smartjarvis dialect, or ``--ping-timeout 0``)."""
        return (self.ping_timeout_s or None) if self.wire.checks_pongs else None

    @property
    def pipeline_options(self) -> dict[str, object]:
        """Keyword arguments for the pipeline's factory; a factory gets those it takes."""
        return {"style": self.wire.nlg_style, "reply_sample_rate_hz": self.reply_rate_hz,
                "phrasing_seed": self.phrasing_seed, "fixed_clock": self.fixed_clock}


def _clock_hh_mm(text: str) -> str:
    if not text.strip():
        return ""  # the default: the clock's own time
    match = re.fullmatch(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a 24-hour time HH:MM, e.g. 09:05 or 16:30")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


class _Parser(argparse.ArgumentParser):
    """A usage error is two lines: what is wrong, and where the options are described."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\nRun `{self.prog} --help` for the options.\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _niceness(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 19:
        raise argparse.ArgumentTypeError(f"must be a niceness 0-19, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m gateway",
        description="Reference voice-gateway speaking the SmartJARVIS WebSocket audio protocol "
        f"on {guide.WS_PATH_GATEWAY} and {guide.WS_PATH_BROWSER_TESTER}, with /healthz, /readyz and /metrics.",
    )
    parser.add_argument(
        "--dialect",
        choices=tuple(DIALECTS),
        default="reference",
        help="wire dialect (default reference). smartjarvis: as the published SmartJARVIS gateway "
        "-- any path; bad header closes 1008 'Invalid message format'; every message after the "
        "header is audio (no end marker: utterances end on silence); the reply is one binary WAV "
        "message at 22050 Hz, no metadata, no reply end; pongs never checked; replies go to the "
        "newest connection with the header's sessionId; SmartJARVIS-style reply sentences",
    )
    net = parser.add_argument_group("network")
    net.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)"
    )
    net.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port (default 7090; 0 picks a free one)"
    )
    net.add_argument(
        "--ping-interval",
        type=_non_negative_float,
        default=guide.SERVER_PING_INTERVAL_S,
        metavar="S",
        help="server ping interval in seconds (default 5)",
    )
    net.add_argument(
        "--ping-timeout",
        type=_non_negative_float,
        default=None,
        metavar="S",
        help="close a session whose pong is this late, seconds (default 20; 0 never; "
        "the smartjarvis dialect never checks pongs)",
    )
    net.add_argument(
        "--max-message-bytes",
        type=_positive_int,
        default=1 << 20,
        metavar="N",
        help="largest WebSocket message accepted (default 1 MiB; bigger closes with 1009)",
    )
    net.add_argument(
        "--queue-frames",
        type=_positive_int,
        default=guide.SESSION_QUEUE_FRAMES,
        metavar="N",
        help="per-session audio queue; when full the oldest frame is dropped (default 50)",
    )
    net.add_argument(
        "--max-sessions",
        type=_positive_int,
        default=1000,
        metavar="N",
        help="above this many sessions /readyz says 503 and upgrades get 503 (default 1000)",
    )
    net.add_argument(
        "--auth-token",
        default=os.environ.get("VOICEGW_AUTH_TOKEN", ""),
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' or '?token=TOKEN' on the upgrade "
        "(default $VOICEGW_AUTH_TOKEN; empty: no auth)",
    )

    vad = parser.add_argument_group(
        'end of utterance (energy VAD; in the reference dialect an {"type":"end"} marker also ends one)'
    )
    vad.add_argument(
        "--vad-silence-ms",
        type=_non_negative_float,
        default=500.0,
        metavar="MS",
        help="trailing silence that ends an utterance (default 500)",
    )
    vad.add_argument(
        "--vad-min-speech-ms",
        type=_non_negative_float,
        default=100.0,
        metavar="MS",
        help="speech needed before an utterance starts, so clicks do not (default 100)",
    )
    vad.add_argument(
        "--vad-max-utterance-ms",
        type=_non_negative_float,
        default=15_000.0,
        metavar="MS",
        help="an utterance is cut at this length (default 15000)",
    )
    vad.add_argument(
        "--vad-threshold-db",
        type=_non_negative_float,
        default=12.0,
        metavar="DB",
        help="speech is this far above the tracked noise floor (default 12)",
    )

    pipe = parser.add_argument_group("speech pipeline")
    pipe.add_argument(
        "--pipeline",
        default=DEFAULT_PIPELINE,
        metavar="MODULE:CLASS",
        help=f"pipeline class, built with no arguments in each worker (default {DEFAULT_PIPELINE})",
    )
    pipe.add_argument(
        "--executor",
        choices=("process", "thread"),
        default="process",
        help="where turns run off the event loop: worker processes (default; pocketsphinx "
        "holds the GIL while decoding) or threads",
    )
    pipe.add_argument(
        "--workers",
        type=_positive_int,
        default=max(1, os.cpu_count() or 1),
        metavar="N",
        help="pipeline workers (default: the CPU count)",
    )
    pipe.add_argument(
        "--worker-nice",
        type=_niceness,
        default=10,
        metavar="0-19",
        help="niceness of worker processes, so the event loop wins the CPU when it wakes (default 10)",
    )
    pipe.add_argument(
        "--fast-sink",
        action="store_true",
        help="benchmark mode: no recognition or synthesis; answer each utterance at once with "
        "fixed metadata and 100 ms of reply audio",
    )
    pipe.add_argument(
        "--fast-sink-intent",
        default="GREETING",
        choices=guide.INTENTS,
        help="intent the fast sink answers (default GREETING)",
    )

    pipe.add_argument(
        "--conformance-echo",
        action="store_true",
        help="WebSocket conformance mode (Autobahn|Testsuite fuzzingclient, scripts/autobahn.sh): "
        "no voice protocol, every message is echoed back as it came; the same server options "
        "(no compression, --max-message-bytes, pings, probes, --max-sessions) and no pipeline",
    )

    reply = parser.add_argument_group("reply format (the first four: reference dialect only)")
    reply.add_argument("--reply-wav", action="store_true", help="send the reply audio as one WAV message")
    reply.add_argument(
        "--no-reply-end", action="store_true", help='send no {"type":"reply_end"} after a reply'
    )
    reply.add_argument(
        "--json-text-frames",
        action="store_true",
        help="send JSON in text frames (default: binary frames holding UTF-8 JSON, as the "
        "browser tester reads them)",
    )
    reply.add_argument(
        "--reply-chunk-bytes",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"bytes per reply audio frame (default {guide.CHUNK_BYTES})",
    )
    reply.add_argument(
        "--reply-sample-rate-hz",
        type=int,
        choices=REPLY_SAMPLE_RATES_HZ,
        default=None,
        metavar="HZ",
        help="sample rate of WAV replies, 16000 or 22050 (default: 16000 in the reference "
        "dialect, where 22050 needs --reply-wav; 22050 in the smartjarvis dialect)",
    )
    reply.add_argument(
        "--clock",
        type=_clock_hh_mm,
        default="",
        metavar="HH:MM",
        help="tell this time (24-hour HH:MM) in every time reply instead of the clock's: replies "
        "that do not depend on when a test or a demo runs",
    )
    reply.add_argument(
        "--phrasing-seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the random choice among an intent's reply phrasings (the smartjarvis "
        "dialect has five per intent, picked at random as the published NLG does); "
        "default: a new choice every run",
    )
    reply.add_argument(
        "--reply-leading-silence-ms",
        type=_non_negative_float,
        default=0.0,
        metavar="MS",
        help="for audible_ms tests: start every reply with exactly MS of digital silence "
        "(the synthesizer's own quiet onset is cut first, so the sound starts at MS)",
    )

    faults = parser.add_argument_group("fault switches (for tests)")
    faults.add_argument(
        "--fault-delay-ms",
        type=_non_negative_float,
        default=0.0,
        metavar="N",
        help="added delay before every reply",
    )
    faults.add_argument(
        "--fault-delay-per-session-ms",
        type=_non_negative_float,
        default=0.0,
        metavar="N",
        help="a gateway that slows down with load: every reply delayed N ms for each session open "
        "when it is answered (10 sessions open: 10 x N ms)",
    )
    faults.add_argument("--fault-no-audio", action="store_true", help="TTS down: metadata, no reply audio")
    faults.add_argument(
        "--fault-wrong-intent",
        nargs="?",
        const="",
        default=None,
        metavar="INTENT",
        help="answer a wrong intent (the next one in the NLU contract's list), or INTENT "
        "forced on the pipeline",
    )
    faults.add_argument(
        "--fault-close-after-frames",
        type=_positive_int,
        default=0,
        metavar="N",
        help="close each session after N audio frames",
    )
    faults.add_argument(
        "--fault-close-code",
        type=int,
        default=1011,
        metavar="C",
        help="close code for --fault-close-after-frames (default 1011; 1006 drops the TCP "
        "link without a close frame)",
    )
    faults.add_argument(
        "--fault-refuse-status",
        type=int,
        default=0,
        metavar="S",
        help="refuse every WebSocket upgrade with HTTP status S",
    )
    faults.add_argument(
        "--fault-silent-reply",
        action="store_true",
        help="reply audio is digital silence of the reply's normal length (the SmartJARVIS "
        "TTS's fallback when piper is missing); metadata, where the dialect sends it, is normal",
    )
    faults.add_argument(
        "--fault-broker-down",
        action="store_true",
        help="the SmartJARVIS gateway with its broker down: sessions stay open, audio is read, "
        "nothing is ever answered",
    )

    logs = parser.add_argument_group("logs")
    logs.add_argument("--log-json", action="store_true", help="one JSON object per line instead of key=value")
    logs.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    logs.add_argument(
        "--redact-transcripts",
        action="store_true",
        help="log transcripts and reply texts as their length only",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    """Check option combinations argparse cannot; raise :class:`UsageError` naming the option."""
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {args.port}")
    if not valid_close_code(args.fault_close_code):
        raise UsageError(
            f"--fault-close-code {args.fault_close_code} cannot be sent; use 1000-1003, 1006 (drop), 1007-1014 or 3000-4999"
        )
    if args.fault_refuse_status and not 300 <= args.fault_refuse_status <= 599:
        raise UsageError(
            f"--fault-refuse-status must be an HTTP status 300-599, got {args.fault_refuse_status}"
        )
    forced = args.fault_wrong_intent or ""
    if forced and forced not in guide.INTENTS:
        raise UsageError(f"--fault-wrong-intent {forced!r} is not one of {', '.join(guide.INTENTS)}")
    if not args.vad_silence_ms >= ENDPOINTER_WINDOW_MS:
        raise UsageError(
            f"--vad-silence-ms must be at least {ENDPOINTER_WINDOW_MS:g} (the endpointer's window), "
            f"got {args.vad_silence_ms:g}"
        )
    if args.vad_max_utterance_ms <= args.vad_silence_ms:
        raise UsageError("--vad-max-utterance-ms must be longer than --vad-silence-ms")
    wire = DIALECTS[args.dialect]
    if wire.name == "smartjarvis":
        reference_only = [
            flag
            for flag, given in (
                ("--reply-wav", args.reply_wav),
                ("--no-reply-end", args.no_reply_end),
                ("--json-text-frames", args.json_text_frames),
                ("--reply-chunk-bytes", args.reply_chunk_bytes is not None),
                ("--ping-timeout", args.ping_timeout is not None),
            )
            if given
        ]
        if reference_only:
            raise UsageError(
                f"{reference_only[0]} does not apply to --dialect smartjarvis (its reply is one WAV "
                "message and it never checks pongs); drop it or use --dialect reference"
            )
    elif args.reply_sample_rate_hz not in (None, guide.SAMPLE_RATE_HZ) and not args.reply_wav:
        raise UsageError(
            f"--reply-sample-rate-hz {args.reply_sample_rate_hz} needs --reply-wav: PCM reply "
            f"frames carry no rate, so they are always {guide.SAMPLE_RATE_HZ} Hz"
        )
    faults = Faults(
        delay_ms=args.fault_delay_ms,
        delay_per_session_ms=args.fault_delay_per_session_ms,
        no_audio=args.fault_no_audio,
        wrong_intent=args.fault_wrong_intent is not None,
        wrong_intent_forced=forced,
        close_after_frames=args.fault_close_after_frames,
        close_code=args.fault_close_code,
        refuse_status=args.fault_refuse_status,
        silent_reply=args.fault_silent_reply,
        broker_down=args.fault_broker_down,
        reply_leading_silence_ms=args.reply_leading_silence_ms,
    )
    return GatewayConfig(
        dialect=args.dialect,
        host=args.host,
        port=args.port,
        ping_interval_s=args.ping_interval,
        ping_timeout_s=DEFAULT_PING_TIMEOUT_S if args.ping_timeout is None else args.ping_timeout,
        max_message_bytes=args.max_message_bytes,
        queue_frames=args.queue_frames,
        max_sessions=args.max_sessions,
        vad_silence_ms=args.vad_silence_ms,
        vad_min_speech_ms=args.vad_min_speech_ms,
        vad_max_utterance_ms=args.vad_max_utterance_ms,
        vad_threshold_db=args.vad_threshold_db,
        pipeline=args.pipeline,
        executor=args.executor,
        workers=args.workers,
        worker_nice=args.worker_nice,
        fast_sink=args.fast_sink,
        fast_sink_intent=args.fast_sink_intent,
        conformance_echo=args.conformance_echo,
        reply_wav=args.reply_wav,
        reply_end=not args.no_reply_end,
        json_text_frames=args.json_text_frames,
        reply_chunk_bytes=args.reply_chunk_bytes or guide.CHUNK_BYTES,
        reply_sample_rate_hz=args.reply_sample_rate_hz,
        phrasing_seed=args.phrasing_seed,
        fixed_clock=args.clock,
        auth_token=args.auth_token,
        faults=faults,
        log_json=args.log_json,
        log_level=args.log_level,
        redact_transcripts=args.redact_transcripts,
    )


def parse_args(argv: Sequence[str] | None = None) -> GatewayConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return config_from_args(args)
    except UsageError as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


# ----------------------------------------------------------------------------- logs


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=info event=turn session=... intent=GREETING`` — one line per event."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={_timestamp(record)}",
            f"level={record.levelname.lower()}",
            f"event={_kv(record.getMessage())}",
        ]
        if record.name != "gateway":
            parts.append(f"logger={record.name}")
        parts.extend(f"{key}={_kv(value)}" for key, value in _fields(record).items())
        if record.exc_info:
            parts.append(f"error={_kv(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        if record.name != "gateway":
            data["logger"] = record.name
        data.update(_fields(record))
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, separators=(",", ":"))


def _kv(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.1f}"
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


def configure_logging(config: GatewayConfig, stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if config.log_json else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log_level)
    # websockets logs every refused or malformed handshake at INFO/ERROR with a traceback;
    # the gateway logs upgrades itself.
    logging.getLogger("websockets").setLevel(
        logging.WARNING if config.log_level != "DEBUG" else logging.DEBUG
    )
