"""The harness's command-line options, added through Locust's ``init_command_line_parser``
so Locust parses them with its own and shows them in the web UI's start form ("Custom
parameters"), and their resolution into one :class:`VoiceRunConfig` per process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from locust import events

from voiceharness import guide, settings as settings_module
from voiceharness.errors import UsageError
from voiceharness.settings import Settings

from locustfiles.voice_connection import ConnectOptions

log = logging.getLogger("voice")


@events.init_command_line_parser.add_listener
def add_voice_options(parser) -> None:
    # Locust's include_in_web_ui works on the parser itself, not on argument groups.
    group = parser
    group.add_argument("--preset", choices=sorted(settings_module.PRESETS), default="local", include_in_web_ui=True,
                       help="Connection preset from the usage guide (explicit flags override it). Default: local")
    # Locust owns --config (its own locust.conf), so the guide's JSON settings file is --voice-config.
    group.add_argument("--voice-config", default="", include_in_web_ui=True,
                       help="JSON settings file in the guide's shape: host, port, protocol, path, autoReconnect, maxRetries")
    group.add_argument("--ws-path", default="", include_in_web_ui=True,
                       help=f"WebSocket path (default {guide.WS_PATH_GATEWAY}; the browser tester uses /ws)")
    group.add_argument("--chunk-samples", type=int, default=0, include_in_web_ui=True,
                       help=f"Samples per audio frame (default {guide.CHUNK_SAMPLES} = {guide.CHUNK_MS:.0f} ms)")
    group.add_argument("--pace", choices=["realtime", "fast"], default="realtime", include_in_web_ui=True,
                       help="realtime: frame k leaves at t0 + k * frame duration; fast: as fast as the socket takes it")
    group.add_argument("--end-marker", action="store_true", default=True, include_in_web_ui=True,
                       help='Send {"type": "end"} after the utterance (default on)')
    group.add_argument("--no-end-marker", dest="end_marker", action="store_false", include_in_web_ui=False,
                       help="Send no end marker: the gateway must end the utterance on silence")
    group.add_argument("--trailing-silence-ms", type=int, default=-1, include_in_web_ui=True,
                       help="Silence streamed after the utterance (default 0 with the end marker, 1000 without)")
    group.add_argument("--reply-timeout-ms", type=int, default=10_000, include_in_web_ui=True,
                       help="Deadline for a reply after the utterance was sent (default 10000)")
    group.add_argument("--reply-gap-ms", type=int, default=600, include_in_web_ui=True,
                       help="Inactivity that ends a reply when the gateway sends no reply_end (default 600)")
    group.add_argument("--utterances", default="", include_in_web_ui=True,
                       help="Corpus filter: comma-separated utterance ids, intents or kind:clean|noisy|unknown "
                            "(default: all but the noisy copies)")
    group.add_argument("--turns-per-connection", type=int, default=0, include_in_web_ui=True,
                       help="Reconnect after this many turns (default 0 = keep the connection)")
    group.add_argument("--auth-token", default="", include_in_web_ui=False, is_secret=True,
                       help="Token sent as 'Authorization: Bearer ...' at the upgrade; never logged")
    group.add_argument("--tls-ca", default="", include_in_web_ui=True,
                       help="CA bundle to verify a wss:// gateway's certificate")
    group.add_argument("--insecure", action="store_true", default=False, include_in_web_ui=True,
                       help="Skip TLS certificate verification (test gateways only; warns)")
    group.add_argument("--redact", action="store_true", default=False, include_in_web_ui=True,
                       help="Keep transcripts and tokens out of logs and the turns file")
    group.add_argument("--log-export", choices=["", "txt", "json"], default="", include_in_web_ui=True,
                       help="Also write the guide-style log to PREFIX_log.txt or PREFIX_log.json")
    group.add_argument("--turns-file", default="", include_in_web_ui=False,
                       help="Where to write the per-turn records (default: PREFIX_turns.csv with --csv PREFIX)")
    group.add_argument("--ping-interval-ms", type=int, default=3000, include_in_web_ui=True,
                       help="Client WebSocket ping interval; a link silent for twice this is dead (default 3000: a 3 s link cut plus TCP's retransmit is survived)")
    group.add_argument("--connect-timeout-ms", type=int, default=5000, include_in_web_ui=True,
                       help="TCP + TLS + upgrade deadline (default 5000)")
    group.add_argument("--stats-by", choices=["utterance", "intent"], default="utterance", include_in_web_ui=True,
                       help="Name the roundtrip/intent/reply rows by utterance id or by expected intent")
    group.add_argument("--think-time-ms", default="1000-3000", include_in_web_ui=True,
                       help="Pause between a user's turns, MIN-MAX ms drawn uniformly (default 1000-3000: "
                            "a person waits for the answer before the next command)")
    group.add_argument("--max-retries", type=int, default=-1, include_in_web_ui=True,
                       help="Override the preset's maxRetries")
    group.add_argument("--corpus-manifest", default="", include_in_web_ui=False,
                       help="Corpus manifest CSV to load instead of the bundled audio_corpus/manifest.csv; "
                            "every file is checked before any user starts; --utterances defaults to all of it")
    group.add_argument("--send-path", choices=["pacer", "timer"], default="pacer", include_in_web_ui=False,
                       help="Real-time sending: pacer (one process-wide greenlet writes pre-framed frames; default) "
                            "or timer (a sleep and a websocket-client send per frame per user; the old path)")


@dataclass(frozen=True)
class VoiceRunConfig:
    settings: Settings
    connect: ConnectOptions
    pace: str
    end_marker: bool
    trailing_silence_ms: int
    reply_timeout_s: float
    reply_gap_s: float
    utterances: str
    turns_per_connection: int
    redact: bool
    log_export: str
    turns_file: str
    stats_by: str
    corpus_manifest: str = ""
    send_path: str = "pacer"
    think_time_s: tuple[float, float] = (1.0, 3.0)


def resolve(options) -> VoiceRunConfig:
    """Build the run's configuration; raises UsageError naming the bad option."""
    overrides = {
        "path": options.ws_path or None,
        "chunk_samples": options.chunk_samples or None,
        "auth_token": options.auth_token or None,
        "max_retries": options.max_retries if options.max_retries >= 0 else None,
    }
    settings = settings_module.resolve(
        preset_name=options.preset,
        config_path=options.voice_config or None,
        url=options.host or None,
        overrides=overrides,
    )
    if not settings.auto_reconnect:
        settings = replace(settings, max_retries=0)
    for name in ("reply_timeout_ms", "reply_gap_ms", "ping_interval_ms", "connect_timeout_ms"):
        if getattr(options, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(options, name)}")
    if options.tls_ca and options.insecure:
        raise UsageError("--tls-ca and --insecure contradict each other; pass one")
    if options.insecure:
        log.warning("--insecure: TLS certificates are NOT verified; use it only against a test gateway")
    trailing = options.trailing_silence_ms
    if trailing < 0:
        trailing = 0 if options.end_marker else 1000
    turns_file = options.turns_file
    if not turns_file and getattr(options, "csv_prefix", None):
        turns_file = f"{options.csv_prefix}_turns.csv"
    return VoiceRunConfig(
        settings=settings,
        connect=ConnectOptions(
            connect_timeout_s=options.connect_timeout_ms / 1000,
            ping_interval_s=options.ping_interval_ms / 1000,
            tls_ca=options.tls_ca or None,
            insecure=options.insecure,
        ),
        pace=options.pace,
        end_marker=options.end_marker,
        trailing_silence_ms=trailing,
        reply_timeout_s=options.reply_timeout_ms / 1000,
        reply_gap_s=options.reply_gap_ms / 1000,
        utterances=options.utterances,
        turns_per_connection=max(0, options.turns_per_connection),
        redact=options.redact,
        log_export=options.log_export,
        turns_file=turns_file,
        stats_by=options.stats_by,
        corpus_manifest=getattr(options, "corpus_manifest", "") or "",
        send_path=getattr(options, "send_path", "pacer") or "pacer",
        think_time_s=_think_time(options.think_time_ms),
    )


def _think_time(text: str) -> tuple[float, float]:
    """'1000-3000' (or '500') ms -> (1.0, 3.0) s."""
    low, _, high = str(text).partition("-")
    try:
        low_ms = float(low)
        high_ms = float(high) if high else low_ms
    except ValueError:
        raise UsageError(f"--think-time-ms {text!r}: give MIN-MAX milliseconds, e.g. 1000-3000") from None
    if not 0 <= low_ms <= high_ms:
        raise UsageError(f"--think-time-ms {text!r}: need 0 <= MIN <= MAX")
    return low_ms / 1000, high_ms / 1000



def print_help() -> None:
    """Print the voice options with Locust's own parser.

    Locust prints ``--help`` before it imports the locustfile, so the harness's options are not
    in ``locust --help``: ``python -m locustfiles.voice_options`` lists them (the web UI's
    "Custom parameters" shows them too).
    """
    from locust.argument_parser import get_empty_argument_parser

    parser = get_empty_argument_parser(add_help=False)
    parser.prog = "locust -f locustfiles/voice.py"
    parser.description = "Options of the voice-gateway harness (besides Locust's own: locust --help)"
    add_voice_options(parser)
    parser.print_help()


if __name__ == "__main__":
    print_help()
