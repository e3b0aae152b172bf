"""The harness's command-line options, added to Locust's parser (by the runtime's
``init_command_line_parser`` listener) so Locust parses them with its own and shows them in the
web UI's start form ("Custom parameters"), and their resolution into one :class:`VoiceRunConfig`
per run: :func:`resolve` from Locust's parsed options, :func:`config_from_arguments` from Python
arguments when Locust runs as a library.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, replace

from voiceharness import calls, dialects, guide, network, protocol
from voiceharness import settings as settings_module
from voiceharness.connection import ConnectOptions
from voiceharness.errors import UsageError
from voiceharness.protocol import ReplyFormat
from voiceharness.settings import Settings

log = logging.getLogger("voice")

DEFAULT_MAX_CONCURRENT_CALLS = 5000  # per load-generator process: generous, a guard against a runaway
DEFAULT_START_TOLERANCE_MS = 1000  # a call started later than this after its arrival is not started
DEFAULT_CALL_TURNS = calls.CallTurns(3, 3)  # frozen: one shared default is safe


def add_voice_options(parser) -> None:
    # Locust's include_in_web_ui works on the parser itself, not on argument groups.
    group = parser
    group.add_argument("--preset", choices=sorted(settings_module.PRESETS), default="local", include_in_web_ui=True,
                       help="Connection preset from the usage guide (explicit flags override it). Default: local")
    # Locust owns --config (its own locust.conf), so the guide's JSON settings file is --voice-config.
    group.add_argument("--voice-config", default="", include_in_web_ui=True,
                       help="JSON settings file in the guide's shape: host, port, protocol, path, autoReconnect, maxRetries")
    group.add_argument("--dialect", choices=sorted(dialects.DIALECTS), default="reference", include_in_web_ui=True,
                       help="The gateway's dialect, a preset of protocol choices that the flags below override: "
                            "reference (this project's gateway), smartjarvis (the published SmartJARVIS gateway: no end "
                            "marker, 1 s trailing silence, text header, one WAV reply judged by ear), browser-tester "
                            "(/ws, no marker, microphone open while the reply plays). Default: reference")
    group.add_argument("--ws-path", default="", include_in_web_ui=True,
                       help=f"WebSocket path (default: the dialect's; {guide.WS_PATH_GATEWAY} for the gateway, "
                            f"{guide.WS_PATH_BROWSER_TESTER} for the browser tester)")
    group.add_argument("--chunk-samples", type=int, default=0, include_in_web_ui=True,
                       help=f"Samples per audio frame (default {guide.CHUNK_SAMPLES} = {guide.CHUNK_MS:.0f} ms)")
    group.add_argument("--pace", choices=["realtime", "fast"], default="realtime", include_in_web_ui=True,
                       help="realtime: frame k leaves at t0 + k * frame duration; fast: as fast as the socket takes it")
    group.add_argument("--end-marker", action=argparse.BooleanOptionalAction, default=None, include_in_web_ui=False,
                       help='Send {"type": "end"} after the utterance, or not (--no-end-marker: the gateway must end '
                            "the utterance on silence). Default: the dialect's (on for reference)")
    group.add_argument("--trailing-silence-ms", type=int, default=-1, include_in_web_ui=True,
                       help="Silence streamed after the utterance (default: the dialect's; 0 with the end marker, "
                            f"1000 without; a silence endpointer needs {dialects.MIN_ENDPOINTER_SILENCE_MS} or more)")
    group.add_argument("--mic-during-reply", choices=["", *protocol.MIC_DURING_REPLY], default="", include_in_web_ui=True,
                       help="open: the trailing silence goes on while the reply plays, until it is over (the browser "
                            "tester's microphone); closed: it stops when reply audio starts. Default: the dialect's")
    group.add_argument("--header-format", choices=["", "binary", "text"], default="", include_in_web_ui=False,
                       help="Send the JSON header as a binary or a text frame (default: the dialect's)")
    group.add_argument("--reply-format", choices=["", *(f.value for f in ReplyFormat)], default="", include_in_web_ui=True,
                       help="How to read replies: auto (detected per message: JSON metadata, WAV files, raw PCM), "
                            "metadata (the gateway must say the intent), wav, pcm. Default: auto")
    group.add_argument("--reply-sample-rate-hz", type=int, default=guide.SAMPLE_RATE_HZ, include_in_web_ui=False,
                       help="Sample rate of raw PCM reply audio when the gateway does not say it (default 16000)")
    group.add_argument("--reply-expectations", default="", include_in_web_ui=True,
                       help="What each intent's reply says, for judging replies by ear: smartjarvis, reference or a JSON "
                            "file (default: the dialect's)")
    group.add_argument("--judge-replies", action="store_true", default=False, include_in_web_ui=True,
                       help="Also hear replies that come with metadata, and fail a turn whose audio says another "
                            "intent than its metadata (reply_mismatch)")
    group.add_argument("--judge-sample", type=float, default=1.0, include_in_web_ui=True,
                       help="Share of replies to hear, 0-1 (default 1: all, up to what the judge's processes keep up with; "
                            "a reply it cannot take in time is left unjudged and counted)")
    group.add_argument("--judge-method", choices=["hybrid", "lm", "grammar"], default="hybrid",
                       include_in_web_ui=False,
                       help="How the judge transcribes replies: hybrid (the full language model, and the expected "
                            "phrases' grammar when it cannot decide; about 0.8 s of CPU a reply), lm (the language "
                            "model alone) or grammar (the expected phrases only: 0.2 s, but deaf to other wordings). "
                            "See docs/reply-judge.md. Default: hybrid")
    group.add_argument("--judge-workers", type=int, default=1, include_in_web_ui=False,
                       help="Processes that hear replies (speech recognition, off the load generator; default 1)")
    group.add_argument("--save-replies", default="", include_in_web_ui=False,
                       help="Save reply audio to this directory (WAV files and index.csv) for judging after the run: "
                            "python -m analysis PREFIX --judge-replies DIR")
    group.add_argument("--save-replies-max-mb", type=float, default=200.0, include_in_web_ui=False,
                       help="Stop saving replies past this many MB (default 200)")
    group.add_argument("--reply-timeout-ms", type=int, default=10_000, include_in_web_ui=True,
                       help="Deadline for a reply, from the end of speech (default 10000)")
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
                       help="Keep the users' and the gateway's words (transcripts, reply texts, details that quote "
                            "them) and tokens out of logs, the turns file and reports")
    group.add_argument("--log-export", choices=["", "txt", "json"], default="", include_in_web_ui=True,
                       help="Also write the guide-style log to PREFIX_log.txt or PREFIX_log.json")
    group.add_argument("--turns-file", default="", include_in_web_ui=False,
                       help="Where to write the per-turn records (default: PREFIX_turns.csv with --csv PREFIX)")
    group.add_argument("--ping-interval-ms", type=int, default=3000, include_in_web_ui=True,
                       help="Client WebSocket ping interval; a link silent for twice this is dead (default 3000: a 3 s link cut plus TCP's retransmit is survived)")
    group.add_argument("--connect-timeout-ms", type=int, default=5000, include_in_web_ui=True,
                       help="TCP + TLS + upgrade deadline (default 5000)")
    group.add_argument("--stats-by", choices=["utterance", "intent"], default="utterance", include_in_web_ui=True,
                       help="Name the roundtrip/intent/reply rows by utterance id or by expected intent "
                            "(under --otel: by intent, since Locust's OpenTelemetry export keeps at most 20 names)")
    group.add_argument("--think-time-ms", default="1000-3000", include_in_web_ui=True,
                       help="Pause between a user's turns, MIN-MAX ms drawn uniformly (default 1000-3000: "
                            "a person waits for the answer before the next command)")
    group.add_argument("--max-retries", type=int, default=-1, include_in_web_ui=True,
                       help="Override the preset's maxRetries")
    group.add_argument("--network", default="", include_in_web_ui=True,
                       help="Put each user on an emulated network link, shaped by the harness itself in both "
                            f"directions (no root): a profile ({', '.join(network.PROFILES)}), a mix of them with "
                            "whole-number weights (wifi:70,4g:25,3g:5: users are assigned in exactly those proportions), "
                            "or figures of one's own (uplink_kbps=200,one_way_delay_ms=50). Audio keeps the "
                            "microphone's pace; a link slower than real time queues it (uplink backlog). Profiles and "
                            "their sources: docs/networks.md. Default: none (the machine's own link)")
    group.add_argument("--corpus-manifest", default="", include_in_web_ui=False,
                       help="Corpus manifest CSV to load instead of the bundled audio_corpus/manifest.csv; "
                            "every file is checked before any user starts; --utterances defaults to all of it")
    # The open model (voiceharness.locust.calls): calls that arrive on their own clock.
    group.add_argument("--call-rate", default="", include_in_web_ui=True,
                       help="Open model (locustfiles/calls.py, CallerUser): calls arrive as a Poisson process at this "
                            "rate, whatever the gateway does: 2/s, 120/min, or a stepped ramp FROM:TO:STEP:HOLD, e.g. "
                            "1/s:10/s:1/s:60s (1/s up to 10/s, each step held 60 s; the analysis reports the knee). "
                            "Default: none (closed-loop users)")
    group.add_argument("--call-turns", default="3", include_in_web_ui=True,
                       help="Turns per open-model call, N or MIN-MAX drawn uniformly (default 3); the think time "
                            "between them, then the call hangs up")
    group.add_argument("--call-seed", type=int, default=-1, include_in_web_ui=True,
                       help="Seed of the call arrivals and turn counts (default -1: a new one every run); the same "
                            "seed offers the same calls at the same moments")
    group.add_argument("--max-concurrent-calls", type=int, default=DEFAULT_MAX_CONCURRENT_CALLS, include_in_web_ui=True,
                       help="Calls in progress at once per load-generator process; a call arriving beyond it is not "
                            f"started and counted as harness_limit (default {DEFAULT_MAX_CONCURRENT_CALLS})")
    group.add_argument("--call-start-tolerance-ms", type=int, default=DEFAULT_START_TOLERANCE_MS,
                       include_in_web_ui=False,
                       help="A call the load generator cannot start within this long after its arrival is not "
                            f"started and counted as not_started_on_time (default {DEFAULT_START_TOLERANCE_MS})")
    group.add_argument("--call-streams", type=int, default=0, include_in_web_ui=False,
                       help="How many caller users share the call rate (default 0: the run's user count, -u); "
                            "give it when callers run beside other users")


@dataclass(frozen=True)
class VoiceRunConfig:
    settings: Settings
    connect: ConnectOptions
    dialect: dialects.Dialect
    pace: str
    end_marker: bool
    trailing_silence_ms: int
    mic_during_reply: str
    reply_format: ReplyFormat
    reply_sample_rate_hz: int
    expectations: str
    judge_replies: bool
    judge_sample: float
    judge_method: str
    judge_workers: int
    save_replies: str
    save_replies_max_bytes: int
    reply_timeout_s: float
    reply_gap_s: float
    utterances: str
    turns_per_connection: int
    redact: bool
    log_export: str
    turns_file: str
    stats_by: str
    corpus_manifest: str = ""
    think_time_s: tuple[float, float] = (1.0, 3.0)
    # The open model (--call-rate): None in a closed-loop run
    call_schedule: calls.CallSchedule | None = None
    call_turns: calls.CallTurns = DEFAULT_CALL_TURNS
    call_seed: int = -1
    max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_CALLS
    call_start_tolerance_s: float = DEFAULT_START_TOLERANCE_MS / 1000
    calls_file: str = ""  # PREFIX_calls.csv with --csv PREFIX, beside the turns file
    network: network.ProfileMix | None = None  # --network: the users' emulated links (None: not shaped)

    def describe(self) -> str:
        """One line for the log: where, in which dialect, how the utterances end."""
        return (f"{self.settings.describe()}, dialect {self.dialect.name}, pace {self.pace}, end marker "
                f"{'on' if self.end_marker else 'off'}, {self.trailing_silence_ms} ms trailing silence, "
                f"mic {self.mic_during_reply} during the reply"
                + (f", network {self.network.describe()}" if self.network is not None else ""))


def resolve(options) -> VoiceRunConfig:
    """Build the run's configuration; raises UsageError naming the bad option."""
    dialect = dialects.dialect(options.dialect or "reference")
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
        default_path=dialect.ws_path,
    )
    if not settings.auto_reconnect:
        settings = replace(settings, max_retries=0)
    for name in ("reply_timeout_ms", "reply_gap_ms", "ping_interval_ms", "connect_timeout_ms", "reply_sample_rate_hz"):
        if getattr(options, name) <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(options, name)}")
    if not 0.0 <= options.judge_sample <= 1.0:
        raise UsageError(f"--judge-sample must be between 0 and 1, got {options.judge_sample}")
    if options.judge_workers < 1:
        raise UsageError(f"--judge-workers must be 1 or more, got {options.judge_workers}")
    if options.tls_ca and options.insecure:
        raise UsageError("--tls-ca and --insecure contradict each other; pass one")
    if options.insecure:
        log.warning("--insecure: TLS certificates are NOT verified; use it only against a test gateway")
    end_marker = _flag(options.end_marker, dialect.end_marker)
    trailing = options.trailing_silence_ms
    if trailing < 0:
        trailing = dialect.trailing_silence_ms if end_marker == dialect.end_marker else (0 if end_marker else 1000)
    if not end_marker and trailing < dialects.MIN_ENDPOINTER_SILENCE_MS:
        log.warning("no end marker and only %d ms of trailing silence: a gateway that ends utterances on silence "
                    "may never answer (give --trailing-silence-ms %d or more)", trailing, dialects.MIN_ENDPOINTER_SILENCE_MS)
    header_format = options.header_format or ("binary" if dialect.header_as_binary else "text")
    turns_file = options.turns_file
    if not turns_file and getattr(options, "csv_prefix", None):
        turns_file = f"{options.csv_prefix}_turns.csv"
    expectations = options.reply_expectations or dialect.expectations
    # A bad expectations file fails the run at its start, in any dialect, even when no reply may
    # need it (a gateway that sends metadata): not at the first reply heard, or never.
    from voiceharness.expectations import load_expectations

    load_expectations(expectations)
    stats_by = options.stats_by
    if getattr(options, "otel", False):
        stats_by = "intent"  # Locust's OpenTelemetry histogram keeps at most 20 request names
    return VoiceRunConfig(
        settings=settings,
        connect=ConnectOptions(
            connect_timeout_s=options.connect_timeout_ms / 1000,
            ping_interval_s=options.ping_interval_ms / 1000,
            tls_ca=options.tls_ca or None,
            insecure=options.insecure,
            header_as_binary=header_format == "binary",
        ),
        dialect=dialect,
        pace=options.pace,
        end_marker=end_marker,
        trailing_silence_ms=trailing,
        mic_during_reply=options.mic_during_reply or dialect.mic_during_reply,
        reply_format=ReplyFormat(options.reply_format) if options.reply_format else dialect.reply_format,
        reply_sample_rate_hz=options.reply_sample_rate_hz,
        expectations=expectations,
        judge_replies=options.judge_replies,
        judge_sample=options.judge_sample,
        judge_method=options.judge_method,
        judge_workers=options.judge_workers,
        save_replies=options.save_replies,
        save_replies_max_bytes=int(options.save_replies_max_mb * 2**20),
        reply_timeout_s=options.reply_timeout_ms / 1000,
        reply_gap_s=options.reply_gap_ms / 1000,
        utterances=options.utterances,
        turns_per_connection=max(0, options.turns_per_connection),
        redact=options.redact,
        log_export=options.log_export,
        turns_file=turns_file,
        stats_by=stats_by,
        corpus_manifest=getattr(options, "corpus_manifest", "") or "",
        think_time_s=_think_time(options.think_time_ms),
        **_call_options(options, turns_file),
        network=network.parse_network(getattr(options, "network", "") or ""),
    )


def _call_options(options, turns_file: str) -> dict:
    """The open model's fields of the config; raises UsageError naming the bad option."""
    schedule = calls.parse_call_rate(getattr(options, "call_rate", ""))
    call_turns = calls.parse_call_turns(getattr(options, "call_turns", "3"))
    max_calls = getattr(options, "max_concurrent_calls", DEFAULT_MAX_CONCURRENT_CALLS)
    tolerance_ms = getattr(options, "call_start_tolerance_ms", DEFAULT_START_TOLERANCE_MS)
    if max_calls < 1:
        raise UsageError(f"--max-concurrent-calls must be 1 or more, got {max_calls}")
    if tolerance_ms <= 0:
        raise UsageError(f"--call-start-tolerance-ms must be positive, got {tolerance_ms}")
    if getattr(options, "call_streams", 0) < 0:
        raise UsageError(f"--call-streams must be 0 (the run's user count) or more, got {options.call_streams}")
    calls_file = ""
    if turns_file.endswith("_turns.csv"):
        calls_file = turns_file[: -len("_turns.csv")] + calls.CALLS_SUFFIX
    elif turns_file:
        calls_file = os.path.splitext(turns_file)[0] + calls.CALLS_SUFFIX
    return {"call_schedule": schedule, "call_turns": call_turns, "call_seed": getattr(options, "call_seed", -1),
            "max_concurrent_calls": max_calls, "call_start_tolerance_s": tolerance_ms / 1000,
            "calls_file": calls_file}


def plain_parser() -> argparse.ArgumentParser:
    """The voice options (and ``--host``) on a plain argparse parser, without Locust: what
    :func:`config_from_arguments` parses, and what a tool or a test can resolve a command line with."""
    parser = argparse.ArgumentParser(prog="voice options", add_help=False)
    parser.add_argument("--host", default="")
    add_voice_options(_PlainParser(parser))
    return parser


def config_from_arguments(*, csv_prefix: str | None = None, **arguments) -> VoiceRunConfig:
    """The run's configuration from Python arguments (Locust as a library): the harness's options
    by their Python names (``host="ws://..."``, ``dialect="smartjarvis"``, ``think_time_ms="0"``...),
    every other one at its command-line default. Raises UsageError naming an unknown one."""
    defaults = plain_parser().parse_args([])
    unknown = sorted(set(arguments) - set(vars(defaults)))
    if unknown:
        raise UsageError(f"unknown voice option(s) {', '.join(unknown)}; `voice-options` lists them "
                         "(use their Python names: think_time_ms for --think-time-ms)")
    options = argparse.Namespace(**{**vars(defaults), **arguments, "csv_prefix": csv_prefix})
    return resolve(options)


class _PlainParser:
    """Takes Locust's ``add_argument`` keywords (``include_in_web_ui``, ``is_secret``) for a plain parser."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def add_argument(self, *names, include_in_web_ui=None, is_secret=None, **kwargs):
        return self.parser.add_argument(*names, **kwargs)


def _flag(value, default: bool) -> bool:
    """A boolean option pair's value: None (not given) -> ``default``; the web UI's form sends strings."""
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _think_time(text: str) -> tuple[float, float]:
    """'1000-3000' (or '500') ms -> (1.0, 3.0) s."""
    low_ms, high_ms = settings_module.parse_min_max(text, float, option="--think-time-ms", minimum=0,
                                                    what="give MIN-MAX milliseconds, e.g. 1000-3000")
    return low_ms / 1000, high_ms / 1000



class _OptionsTable:
    """Collects the options as ``add_voice_options`` declares them, for the Markdown table."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []

    def add_argument(self, *names, include_in_web_ui=False, is_secret=False, **kwargs):
        if kwargs.get("action") is argparse.BooleanOptionalAction:
            names = (*names, *(f"--no-{name[2:]}" for name in names if name.startswith("--")))
        option = ", ".join(f"`{name}`" for name in names)
        choices = kwargs.get("choices")
        if choices:
            option += " " + "\\|".join(str(c) for c in choices if c != "")
        meaning = " ".join(str(kwargs.get("help", "")).split()).replace("|", "\\|")
        self.rows.append((option, "yes" if include_in_web_ui else "", meaning))


def markdown_table() -> str:
    """Every voice option as a Markdown table (docs/options.md is this, between its markers)."""
    from voiceharness.locust.metrics import add_metrics_options

    table = _OptionsTable()
    add_voice_options(table)
    add_metrics_options(table)
    lines = ["| option | in the web UI's form | meaning |", "|---|---|---|"]
    lines += [f"| {option} | {web_ui} | {meaning} |" for option, web_ui, meaning in table.rows]
    return "\n".join(lines) + "\n"


def print_help(argv: list[str] | None = None) -> None:
    """Print the voice options with Locust's own parser (``--markdown``: as the table of docs/options.md).

    Locust prints ``--help`` before it imports the locustfile, so the harness's options are not
    in ``locust --help``: ``voice-options`` (``python -m voiceharness.locust.options``) lists them
    (the web UI's "Custom parameters" shows them too).
    """
    import sys

    args = sys.argv[1:] if argv is None else argv
    if "--markdown" in args:
        sys.stdout.write(markdown_table())
        return
    from locust.argument_parser import get_empty_argument_parser

    parser = get_empty_argument_parser(add_help=False)
    parser.prog = "locust -f LOCUSTFILE (voice-locust for the built-in scenarios)"
    parser.description = "Options of the voice-gateway harness (besides Locust's own: locust --help)"
    add_voice_options(parser)
    from voiceharness.locust.metrics import add_metrics_options

    add_metrics_options(parser)
    parser.print_help()


if __name__ == "__main__":
    print_help()
