"""``python -m analysis``: analyse one run, or compare runs, and gate on thresholds.

::

    python -m analysis results/run                      # terminal report + report.html/json + junit.xml
    python -m analysis results/run --gate 'roundtrip.p95<500' --gate 'intent.accuracy>=0.98'
    python -m analysis results/run --gate-file gate.txt --out-dir results/report
    python -m analysis results/baseline results/candidate   # compare (or: CANDIDATE --compare BASELINE)

Exit status: 0 analysed and every threshold held; 1 a threshold failed (each failure is named
with its measured value); 2 bad input or usage (one line ``analysis: error: FILE: what is
wrong. what to do`` on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

from analysis import compare as compare_module
from analysis import exports, gate, progress, readers, report_html, terminal
from analysis.compare import Comparison
from analysis.metrics import summarize
from analysis.summary import RunSummary
from voiceharness.errors import HarnessError

EXIT_OK, EXIT_GATE_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analysis",
        description="Analyse a load run from the files under its Locust --csv PREFIX: bands, exact "
        "percentiles, intent accuracy, diagnoses, send lateness, an HTML report, report.json, JUnit "
        "XML and an optional pass/fail gate. With several prefixes the first is the baseline and "
        "each other is compared against it.",
        epilog="Gate thresholds: NAME OP VALUE, e.g. roundtrip.p95<500, latency.p99<=100ms, "
        "intent.accuracy>=0.98, reconnections.max<=3, band.roundtrip<=good, roundtrip.share.bad<=1%%, "
        "failures.rate<0.01, audible.p95<800, judge.agreement>=0.98, harness_errors.count<=0, "
        "fast.failures.rate<0.01. Figures are of real-time turns; fast-paced turns are shown apart (fast.*). "
        "Exit status: 0 ok, 1 a threshold failed, 2 bad input or usage.",
    )
    parser.add_argument(
        "prefixes",
        nargs="+",
        metavar="PREFIX",
        help="the run's --csv prefix (e.g. results/run); a file of the run is accepted too",
    )
    parser.add_argument(
        "--compare", metavar="BASELINE", help="compare the run(s) against this baseline prefix"
    )
    parser.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="EXPR",
        help="a threshold; repeat it or separate several with ',' (checked on the last run)",
    )
    parser.add_argument(
        "--gate-file", metavar="FILE", help="thresholds read from FILE, one or more a line, # comments"
    )
    parser.add_argument(
        "--out-dir",
        metavar="DIR",
        help="where report.html, report.json and junit.xml go (default: the last run's directory)",
    )
    parser.add_argument(
        "--html", metavar="FILE", help="path of the HTML report (default OUT_DIR/report.html)"
    )
    parser.add_argument("--json", metavar="FILE", help="path of report.json (default OUT_DIR/report.json)")
    parser.add_argument("--junit", metavar="FILE", help="path of the JUnit XML (default OUT_DIR/junit.xml)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML report (the slowest output)")
    parser.add_argument("--no-files", action="store_true", help="write no file, print only")
    parser.add_argument("--all", action="store_true", help="print every utterance, not only the worst ones")
    parser.add_argument(
        "--quiet", "-q", action="store_true", help="print only the verdict, the gate and where files went"
    )
    parser.add_argument(
        "--moved-pct",
        type=float,
        default=compare_module.MOVED_PCT,
        metavar="PCT",
        help="a comparison calls a statistic moved at this change in percent (default %(default)s)",
    )
    parser.add_argument(
        "--progress",
        choices=progress.MODES,
        default="auto",
        help="progress on stderr while reading: auto (large files on a terminal), always, never",
    )
    parser.add_argument(
        "--judge-replies",
        metavar="DIR",
        help="hear the replies the run saved (--save-replies DIR) and judge the turns it left unjudged "
        "(a gateway that sends no metadata, at a load one judge process could not keep up with)",
    )
    parser.add_argument(
        "--reply-expectations",
        metavar="NAME_OR_FILE",
        help="with --judge-replies: smartjarvis, reference or a JSON file (default: the run's dialect's)",
    )
    parser.add_argument("--judge-workers", type=int, metavar="N", help="with --judge-replies: processes (default: cores)")
    parser.add_argument("--judge-method", choices=["hybrid", "lm", "grammar"], default="hybrid",
                        help="with --judge-replies: how replies are transcribed (see docs/reply-judge.md)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except HarnessError as error:
        print(f"analysis: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return EXIT_OK
    except Exception as error:
        if args.debug:
            raise
        print(
            f"analysis: error: {' '.join(args.prefixes)}: unexpected {type(error).__name__}: {error}. "
            "Re-run with --debug for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT


def _run(args: argparse.Namespace) -> int:
    # Parse the gate first, so a typo fails in a second rather than after reading a large run.
    expressions = list(args.gate)
    if args.gate_file:
        expressions += gate.read_gate_file(args.gate_file)
    thresholds = gate.parse_all(expressions)

    prefixes = ([args.compare] if args.compare else []) + list(args.prefixes)
    runs = [readers.read_run(prefix, progress=args.progress) for prefix in prefixes]
    judged_after = None
    if args.judge_replies:
        judged_after = _judge_saved_replies(runs[-1], args)
    summaries = [summarize(run) for run in runs]
    if judged_after is not None:
        summaries[-1] = replace(summaries[-1], judged_after_the_run=judged_after)
    comparisons = [
        compare_module.compare(summaries[0], candidate, moved_pct=args.moved_pct)
        for candidate in summaries[1:]
    ]
    checks = gate.evaluate(thresholds, summaries[-1]) if thresholds else []

    out = sys.stdout
    if not args.quiet:
        for summary in summaries:
            out.write(terminal.render(summary, all_rows=args.all) + "\n")
        for comparison in comparisons:
            out.write(terminal.render_comparison(comparison) + "\n\n")
    else:
        for summary in summaries:
            out.write(f"{summary.run.label}: verdict: {summary.verdict.text}\n")
    if checks:
        out.write(terminal.render_checks(checks) + "\n")

    if not args.no_files:
        written = _write_files(args, runs, summaries, checks, comparisons)
        out.write("wrote " + ", ".join(written) + "\n")
    out.flush()

    failed = [check for check in checks if not check.passed]
    if failed:
        for check in failed:
            print(f"analysis: gate failed: {check.message}", file=sys.stderr)
        return EXIT_GATE_FAILED
    return EXIT_OK


def _judge_saved_replies(run, args: argparse.Namespace) -> dict:
    """Complete the last run's unjudged turns from its saved replies (analysis/saved_replies.py)."""
    from analysis.saved_replies import judge_run
    from voiceharness import dialects

    if run.turns is None:
        raise HarnessError(f"{run.prefix}: --judge-replies needs the run's turns file (_turns.csv)")
    expectations = args.reply_expectations or dialects.dialect((run.status or {}).get("dialect") or "reference").expectations
    run.turns, summary = judge_run(run.turns, args.judge_replies, expectations, workers=args.judge_workers,
                                   method=args.judge_method)
    print(f"judged {summary['saved_replies']} saved replies against the {expectations} expectations: "
          f"{summary['judged_after_the_run']} turns judged after the run, {summary['unreadable']} unreadable",
          file=sys.stderr)
    return summary


def _write_files(
    args: argparse.Namespace, runs: list, summaries: list[RunSummary], checks: list, comparisons: list[Comparison]
) -> list[str]:
    out_dir = args.out_dir or os.path.dirname(runs[-1].prefix) or "."
    paths = {
        "json": args.json or os.path.join(out_dir, "report.json"),
        "junit": args.junit or os.path.join(out_dir, "junit.xml"),
    }
    if not args.no_html:
        paths["html"] = args.html or os.path.join(out_dir, "report.html")
    texts = {
        "json": exports.to_json(summaries, checks, comparisons),
        "junit": exports.to_junit(summaries, checks),
    }
    if "html" in paths:
        texts["html"] = report_html.render(list(zip(runs, summaries)), checks, comparisons)
    for kind, path in paths.items():
        try:
            exports.write_text(path, texts[kind])
        except OSError as error:
            raise HarnessError(
                f"{path}: cannot be written ({error.strerror}). Choose another --out-dir"
            ) from None
    return [paths[kind] for kind in ("html", "json", "junit") if kind in paths]
