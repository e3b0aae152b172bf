"""The command line of the audio checks (``python mic_probe.py COMMAND``, ``voice-mic-probe``).

Parses the options, runs one check (:mod:`audio_probe.commands`, :mod:`audio_probe.acoustic`),
prints its :class:`~audio_probe.result.Result` as text or ``--json``, and turns every expected
error (a device, a gateway, a bad option) into exit status 2 with one line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from voiceharness import guide
from voiceharness.errors import DeviceError, GatewayError, HarnessError, UsageError

from .acoustic import run_acoustic
from .commands import run_devices, run_loopback, run_mic, run_speaker
from .devices import StreamHung
from .result import EXIT_COULD_NOT_RUN, EXIT_FAIL, Result, with_attempts
from .signals import LOOPBACK_LEVEL_DBFS, MIN_CORRELATION, TONE_LEVEL_DBFS

SAMPLE_RATE_HZ = guide.SAMPLE_RATE_HZ


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    dev = argparse.ArgumentParser(add_help=False)
    dev.add_argument("--device", help="device index or part of its name; IN,OUT for separate input/output")
    dev.add_argument(
        "--rate",
        type=int,
        default=SAMPLE_RATE_HZ,
        metavar="HZ",
        help="rate to open the device at (default %(default)s, the protocol's); "
        "an unsupported rate falls back to the device's own, resampled to 16 kHz",
    )

    retry = argparse.ArgumentParser(add_help=False)
    retry.add_argument(
        "--attempts",
        type=int,
        default=1,
        help="run a failed check again, up to this many times in all, when the failure may be a "
        "dropout of a busy machine (default %(default)s)",
    )

    parser = argparse.ArgumentParser(
        prog="mic_probe.py",
        description="Audio checks: devices, microphone levels, speaker tone, "
        "loopback measurements and the acoustic voice path. "
        "Exit 0 pass, 1 fail, 2 could not run.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("devices", parents=[common], help="input and output devices, defaults marked")
    mic = sub.add_parser(
        "mic", parents=[common, dev], help="live level bars, RMS/peak dBFS, clipping, verdict"
    )
    mic.add_argument("--duration", type=float, default=5.0, help="seconds to capture (default %(default)s)")
    mic.add_argument("--no-bars", action="store_true", help="no live level bars")
    mic.add_argument("--save", metavar="WAV", help="write the 16 kHz PCM16 capture to this file")
    spk = sub.add_parser(
        "speaker", parents=[common, dev, retry], help="play a 440 Hz tone, confirm it if captured back"
    )
    spk.add_argument(
        "--duration", type=float, default=2.0, help="tone length in seconds (default %(default)s)"
    )
    spk.add_argument("--level", type=float, default=TONE_LEVEL_DBFS, help="peak dBFS (default %(default)s)")
    spk.add_argument("--no-capture", action="store_true", help="only play; do not try to hear it back")
    loop = sub.add_parser(
        "loopback", parents=[common, dev, retry], help="chirp + tone out and back: latency, SNR, THD"
    )
    loop.add_argument(
        "--duration", type=float, default=1.0, help="tone length in seconds (default %(default)s)"
    )
    loop.add_argument(
        "--level", type=float, default=LOOPBACK_LEVEL_DBFS, help="peak dBFS (default %(default)s)"
    )
    ac = sub.add_parser(
        "acoustic",
        parents=[common, dev, retry],
        help="play a corpus utterance, capture it, stream it to the gateway: intent, roundtrip",
    )
    ac.add_argument(
        "--url",
        default=f"ws://127.0.0.1:7090{guide.WS_PATH_GATEWAY}",
        help="the gateway's WebSocket URL (default %(default)s)",
    )
    ac.add_argument(
        "--text",
        default="hello jarvis",
        help="say the first clean corpus utterance with this text (default %(default)r)",
    )
    ac.add_argument("--utterance", metavar="ID", help="say this corpus utterance instead")
    ac.add_argument(
        "--no-end-marker",
        dest="end_marker",
        action="store_false",
        help="end the utterance by trailing silence only (the browser tester's way)",
    )
    ac.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for the reply (default %(default)s)"
    )
    return parser


def _emit(result: Result, as_json: bool, out: TextIO) -> None:
    if as_json:
        out.write(json.dumps(result.to_json(), indent=2) + "\n")
        return
    out.writelines(line + "\n" for line in result.lines)
    out.write(f"Verdict: {result.verdict}" + (f" — {result.advice}" if result.advice else "") + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = sys.stdout
    try:
        if getattr(args, "duration", 1.0) <= 0:
            raise UsageError("--duration must be a positive number of seconds")
        if args.command == "devices":
            result = run_devices()
        elif args.command == "mic":
            result = run_mic(
                args.device,
                args.duration,
                bars=not args.no_bars,
                bar_stream=sys.stderr if args.json else sys.stdout,
                wanted_hz=args.rate,
                save=args.save,
            )
        elif args.command == "speaker":
            result = with_attempts(
                lambda: run_speaker(
                    args.device,
                    args.duration,
                    args.level,
                    capture_back=not args.no_capture,
                    wanted_hz=args.rate,
                ),
                args.attempts,
                lambda r: r.exit_code == EXIT_FAIL,
                ("heard_frequency_hz", "heard_level_dbfs", "heard_snr_db"),
            )
        elif args.command == "loopback":
            result = run_loopback(
                args.device, args.duration, args.level, wanted_hz=args.rate, attempts=args.attempts
            )
        else:
            result = with_attempts(
                lambda: run_acoustic(args),
                args.attempts,
                # only a capture that does not match what was played (dropouts) is worth a retry
                lambda r: (
                    r.exit_code == EXIT_FAIL and r.data.get("capture_correlation", 1.0) < MIN_CORRELATION
                ),
                ("intent", "capture_correlation", "roundtrip_ms"),
            )
    except StreamHung as error:
        # PortAudio's cleanup would wait for the stalled stream forever: report and leave now.
        _emit(
            Result(args.command, EXIT_COULD_NOT_RUN, "could not run", str(error), [], {}, error.diagnosis),
            args.json,
            sys.stdout if args.json else sys.stderr,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_COULD_NOT_RUN)
    except DeviceError as error:
        result = Result(
            args.command, EXIT_COULD_NOT_RUN, "could not run", str(error), [], {}, error.diagnosis
        )
        if not args.json:
            sys.stderr.write(f"mic_probe {args.command}: {error}\n")
            return EXIT_COULD_NOT_RUN
    except GatewayError as error:
        code = getattr(error, "diagnosis", None)
        result = Result(args.command, EXIT_COULD_NOT_RUN, "could not run", str(error), [], {}, code)
        if not args.json:
            sys.stderr.write(f"mic_probe {args.command}: {error}\n")
            return EXIT_COULD_NOT_RUN
    except HarnessError as error:
        result = Result(args.command, EXIT_COULD_NOT_RUN, "could not run", str(error))
        if not args.json:
            sys.stderr.write(f"mic_probe {args.command}: {error}\n")
            return EXIT_COULD_NOT_RUN
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return EXIT_COULD_NOT_RUN
    _emit(result, args.json, out)
    return result.exit_code

