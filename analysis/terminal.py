"""The summary as plain text for a terminal or a CI log (no colours, no width tricks).

:func:`render` prints the sections in the order a person reads after a run: what was read,
the four documented metrics with their bands (real-time turns; the time to an audible reply
beside the roundtrip), timings, the fast-paced turns apart, intent accuracy and how it was
judged, the replies, diagnoses, harness errors, Locust's own failures, CPU and memory, whether
the load generator kept up and the link carried the audio, and the one-line verdict last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from analysis.compare import Comparison
from analysis.gate import Check
from analysis.metrics import band_ranges
from analysis.summary import (
    Audible,
    Diagnosis,
    FastTurns,
    HarnessErrors,
    IntentSources,
    IntentSummary,
    JudgeAgreement,
    LocustSummary,
    MetricSummary,
    NetworkProfileSummary,
    ReplyAudio,
    ResourcesSummary,
    RunInfo,
    RunSummary,
    SendLateness,
    Timing,
    UplinkBacklog,
)

MAX_UTTERANCES = 15
MAX_ROWS = 10
STATS = ("p50", "p90", "p95", "p99", "max")  # the statistics a table shows


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "  ") -> str:
    """A text table; columns whose cells all look numeric are right-aligned."""
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def numeric(i: int) -> bool:
        values = [row[i] for row in cells[1:] if row[i] not in ("", "-")]
        return bool(values) and all(
            v.replace(".", "")
            .replace("%", "")
            .replace("-", "")
            .replace("+", "")
            .replace(" ms", "")
            .replace(",", "")
            .isdigit()
            for v in values
        )

    right = [numeric(i) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        text = "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right))
        lines.append(indent + text.rstrip())
        if n == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.1f}"
    return f"{text} {unit}".strip() if unit else text


def percent(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def render(summary: RunSummary, *, all_rows: bool = False) -> str:
    sections = [
        _run(summary.run),
        *(
            _metric(name, entry) + (_audible(summary.audible) + _split(summary.timings) if name == "roundtrip" else "")
            for name, entry in summary.metrics.items()
        ),
        _timings(summary.timings),
        _fast(summary.fast),
        _intent(summary.intent, all_rows),
        _intent_sources(summary.intent_sources, summary.intent),
        _judge(summary.judge),
        _replies(summary.replies),
        _diagnoses(summary.diagnoses),
        _harness_errors(summary.harness_errors),
        _locust(summary.locust),
        _resources(summary.resources),
        _lateness(summary.send_lateness),
        _uplink(summary.uplink_backlog),
        _calls(summary.calls),
        _by_network(summary.by_network),
        "verdict: " + summary.verdict.text,
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _run(run: RunInfo) -> str:
    lines = [f"Run {run.prefix}"]
    if run.target:
        lines[0] += f" against {run.target}"
    if run.by_turns:
        duration = run.duration_s or 0
        rate = run.turns_per_s
        lines.append(
            f"  {run.turns} turns ({run.succeeded} ok, {run.failed} failed, {percent(run.failure_rate)}), "
            f"{run.workers} worker(s), {run.users} user(s), {duration:.1f} s"
            + (f", {rate:.1f} turns/s" if rate else "")
        )
        realtime, fast = run.realtime, run.fast
        if fast is not None and fast.turns and realtime is not None:
            lines.append(
                f"  {realtime.turns} real-time ({realtime.failed} failed), {fast.turns} fast-paced "
                f"({fast.failed} failed): every figure below is over the real-time turns; fast-paced turns "
                "are shown apart"
            )
        if run.dialects and list(run.dialects) != ["reference"]:
            lines.append(f"  dialect: {', '.join(run.dialects)}")
    else:
        lines.append(f"  {run.requests} Locust requests, {run.failed} failed ({percent(run.failure_rate)})")
    if run.start:
        lines.append(
            f"  from {run.start} to {run.end}" + (f", peak {run.peak_users} users" if run.peak_users else "")
        )
    lines.append(f"  percentiles: {run.percentile_source}")
    if run.cut_short_note:
        lines.append(f"  {run.cut_short_note}")
    if run.harness_errors:
        lines.append(
            f"  {run.harness_errors} turn(s) ended in harness_error (a bug in the harness): not counted as the "
            "gateway's; see Harness errors"
        )
    if run.missing:
        lines.append("  not found: " + ", ".join(run.missing))
    return "\n".join(lines)


def _metric(name: str, entry: MetricSummary) -> str:
    unit = entry.unit
    if entry.source is None:
        return f"{entry.title}: {entry.definition}\n  {entry.note}"
    band = entry.band or "-"
    head = f"{entry.title}: {band.upper()} (band of the {entry.band_basis}); {entry.definition}"
    ranges = band_ranges(name)
    per = entry.per
    rows = [[row.band, ranges[row.band], row.count, percent(row.share)] for row in entry.bands]
    lines = [head, table(["band", "range", per, "share"], rows)]
    p = entry.percentiles
    lines.append(
        "  "
        + "  ".join(f"{k} {number(p.stat(k))}" for k in STATS)
        + (f" {unit}" if unit and unit != "chunks" else "")
        + f"  ({entry.count} {per})"
    )
    if entry.received is not None and entry.received.p50 is not None:
        r = entry.received
        lines.append(f"  received per turn: p50 {number(r.p50)}  p95 {number(r.p95)}  max {number(r.max)}")
    if entry.note:
        lines.append(f"  note: {entry.note}")
    return "\n".join(lines)


def _audible(audible: Audible) -> str:
    """The time to an audible reply, printed under the roundtrip's band table."""
    if not audible.count:
        return ""
    p, lead = audible.percentiles, audible.lead
    return (
        "\n  audible reply: "
        + "  ".join(f"{k} {number(p.stat(k))}" for k in STATS)
        + f" ms  ({audible.count} turns; {audible.definition})"
        + f"\n  audible - roundtrip: p50 {number(lead.p50)} ms, p95 {number(lead.p95)} ms, "
        f"max {number(lead.max)} ms (leading silence of the reply; not banded)"
    )


def _split(timings: Mapping[str, Timing]) -> str:
    """The roundtrip in two, printed under its band table: the client's part and the gateway's."""
    client, gateway = timings.get("client_tail_ms"), timings.get("gateway_response_ms")
    if client is None or gateway is None or not gateway.count:
        return ""
    return (
        "\n  the roundtrip in two: the client's part (end of speech -> its last frame or end marker sent) "
        + "  ".join(f"{k} {number(client.percentiles.stat(k))}" for k in ("p50", "p95"))
        + " ms; the gateway's part (-> first reply audio) "
        + "  ".join(f"{k} {number(gateway.percentiles.stat(k))}" for k in ("p50", "p95", "p99"))
        + " ms"
    )


def _timing_row(title: str, timing: Timing) -> list[object]:
    return [title, *(number(timing.percentiles.stat(k)) for k in STATS)]


def _timings(timings: Mapping[str, Timing]) -> str:
    shown = [entry for entry in timings.values() if entry.count]
    if not shown:
        return ""
    rows = [_timing_row(entry.title, entry) for entry in shown]
    return "Other timings (ms, no documented bands; real-time turns)\n" + table(["timing", *STATS], rows)


def _fast(fast: FastTurns) -> str:
    if not fast.turns:
        return ""
    lines = [
        (
            f"Fast-paced turns, apart: {fast.turns} ({fast.succeeded} ok, {fast.failed} failed, "
            f"{percent(fast.failure_rate)})"
        ),
        f"  {fast.note}",
    ]
    rows = [["roundtrip", *(number(fast.roundtrip.stat(k)) for k in STATS)]]
    rows += [_timing_row(entry.title, entry) for entry in fast.timings.values() if entry.count]
    lines.append(table(["timing (ms)", *STATS], rows))
    intent = fast.intent
    if intent is not None and intent.turns:
        not_judged = intent.not_judged.turns if intent.not_judged is not None else 0
        lines.append(
            f"  intent accuracy {percent(intent.accuracy, 2)} ({intent.correct}/{intent.turns} judged turns"
            + (f"; {not_judged} not judged" if not_judged else "")
            + ")"
        )
    for d in fast.diagnoses:
        lines.append(f"  {d.count:>7}  {d.code}: {d.headline}: {d.finding}")
    return "\n".join(lines)


def _intent(intent: IntentSummary, all_rows: bool) -> str:
    if not intent.turns:
        return "Intent accuracy\n  no turns with an expected intent"
    judged = " judged" if intent.not_judged is not None else ""
    lines = [f"Intent accuracy: {percent(intent.accuracy, 2)} ({intent.correct}/{intent.turns}{judged} turns)"]
    left_out = intent.not_judged
    if left_out is not None and left_out.turns:
        reasons = ", ".join(f"{r.turns} {r.reason}" for r in left_out.reasons)
        lines.append(f"  not judged, so not counted: {left_out.turns} turn(s) ({reasons})")
    if intent.note:
        lines.append(f"  note: {intent.note}")
    if intent.per_intent:
        rows = [[r.intent, r.turns, r.correct, percent(r.accuracy), percent(r.precision)] for r in intent.per_intent]
        lines += [
            "  per expected intent",
            table(["intent", "turns", "correct", "accuracy", "precision"], rows, "    "),
        ]
    every = intent.per_utterance
    # Rows at 100 % say nothing a count does not (--all prints them).
    utterances = list(every) if all_rows else [r for r in every if r.accuracy < 1.0]
    perfect = sum(r.accuracy >= 1.0 for r in every)
    if perfect and not all_rows:
        lines.append(f"  {perfect} of {len(every)} utterances at 100 %" + ("" if utterances else " (all of them)"))
    shown = utterances if all_rows else utterances[:MAX_UTTERANCES]
    rows = [
        [
            r.utterance,
            r.expected or "-",
            r.turns,
            percent(r.accuracy),
            f"{r.top_wrong} x{r.top_wrong_count}" if r.top_wrong else "-",
        ]
        for r in shown
    ]
    if rows:
        lines += [
            "  per utterance (worst first)" + ("" if all_rows else ", below 100 %"),
            table(["utterance", "expected", "turns", "accuracy", "most common wrong"], rows, "    "),
        ]
    if len(shown) < len(utterances):
        lines.append(f"    ... {len(utterances) - len(shown)} more (--all, or the HTML report)")
    confusion = intent.confusion
    if confusion.expected:
        headers = ["expected \\ got", *confusion.recognised]
        rows = [[e, *counts] for e, counts in zip(confusion.expected, confusion.counts)]
        lines += ["  confusion matrix (rows: expected, columns: recognised)", table(headers, rows, "    ")]
    return "\n".join(lines)


def _intent_sources(sources: IntentSources, intent: IntentSummary) -> str:
    if not sources.rows:
        return ""
    rows = [[r.title, r.turns, percent(r.share)] for r in sources.rows]
    lines = ["Intent source (where each turn's intent came from)", table(["source", "turns", "share"], rows)]
    by_source = intent.by_source or ()
    if len(by_source) > 1:
        rows = [[r.title, r.turns, r.correct, percent(r.accuracy, 2)] for r in by_source]
        lines += ["  accuracy per source", table(["source", "turns", "correct", "accuracy"], rows, "    ")]
    if sources.note:
        lines.append(f"  note: {sources.note}")
    return "\n".join(lines)


def _judge(judged: JudgeAgreement) -> str:
    if not judged.turns:
        return ""
    lines = [
        (
            f"Reply judge against the metadata: agrees on {percent(judged.agreement, 2)} "
            f"({judged.agreed}/{judged.turns} turns judged both ways)"
        )
    ]
    confusion = judged.confusion
    headers = ["metadata \\ audio", *confusion.audio]
    rows = [[m, *counts] for m, counts in zip(confusion.metadata, confusion.counts)]
    lines += ["  confusion matrix (rows: metadata intent, columns: intent heard in the reply audio)",
              table(headers, rows, "    ")]
    return "\n".join(lines)


def _replies(replies: ReplyAudio | None) -> str:
    if not replies:
        return ""
    lines = []
    if replies.formats:
        lines.append("  formats: " + ", ".join(f"{r.format} {r.turns}" for r in replies.formats))
    if replies.sample_rates:
        lines.append("  sample rates: " + ", ".join(f"{r.sample_rate_hz} Hz {r.turns}" for r in replies.sample_rates))
    if replies.audio_count:
        p = replies.audio_ms
        lines.append(f"  audio duration: p50 {number(p.p50)} ms, p95 {number(p.p95)} ms, max {number(p.max)} ms")
    stalls = replies.playback_stalls
    if stalls.turns:
        lines.append(
            f"  playback stalls (audio would have run out if played as it arrived): {stalls.stalled_turns} of "
            f"{stalls.turns} streamed replies ({percent(stalls.share)}), {stalls.total} stalls, "
            f"most in one reply {stalls.max}"
        )
    return "Replies (real-time turns)\n" + "\n".join(lines) if lines else ""


def _harness_errors(errors: HarnessErrors) -> str:
    if not errors.count:
        return ""
    lines = [
        f"Harness errors: {errors.count} turn(s), counted apart (not the gateway's failures)",
        f"  {errors.headline}: {errors.finding}",
        f"  {errors.advice}",
    ]
    lines += [f"  e.g. {example}" for example in errors.examples]
    return "\n".join(lines)


def _resources(resources: ResourcesSummary) -> str:
    if not resources.samples:
        return ""
    rows = [
        [w.worker, w.samples, number(w.cpu_p50_percent), number(w.cpu_max_percent),
         number(w.rss_max_mb), "SATURATED" if w.saturated else ""]
        for w in resources.workers
    ]  # fmt: skip
    gateway = resources.gateway
    if gateway:
        rows.append(["gateway", "", number(gateway.cpu_p50_percent), number(gateway.cpu_max_percent),
                     number(gateway.rss_max_mb), ""])  # fmt: skip
    judge = resources.judge
    if judge:
        rows.append(["reply judge", "", number(judge.cpu_p50_percent), number(judge.cpu_max_percent), "", "apart"])
    lines = [
        "CPU and memory (_resources.csv)",
        table(["process", "samples", "CPU p50 %", "CPU max %", "RSS max MB", "note"], rows),
    ]
    if gateway:
        lines.append(f"  gateway CPU: {gateway.counted}")
    if judge:
        lines.append(f"  reply judge CPU: {judge.counted}")
    if any(w.saturated for w in resources.workers):
        lines.append(f"  a load generator above {resources.saturated_percent:g}% CPU sends late: add workers")
    if resources.note:
        lines.append(f"  note: {resources.note}")
    return "\n".join(lines)


def _calls(calls) -> str:  # analysis.calls.CallsSummary, or None for a closed-loop run
    if calls is None:
        return ""
    lines = [
        "Calls (open model, _calls.csv)",
        (f"  offered {calls.offered}, started {calls.started}, completed {calls.completed}, failed {calls.failed}, "
         f"cut by the run's end {calls.run_stopped}"),
        ("  not started (the load generator's limits, not the gateway's failures): "
         f"{calls.not_started_on_time} late, {calls.harness_limit} over --max-concurrent-calls"),
        (f"  arrivals {number(calls.arrival_rate_per_s)}/s measured; concurrent calls mean "
         f"{number(calls.concurrent_calls_mean)}, max {calls.concurrent_calls_max}"),
        (f"  setup (connect) p50 {number(calls.setup_ms.p50, 'ms')}, p95 {number(calls.setup_ms.p95, 'ms')}, "
         f"p99 {number(calls.setup_ms.p99, 'ms')}; start lateness p99 {number(calls.start_lateness_ms.p99, 'ms')}"),
    ]
    if calls.failed_by_diagnosis:
        lines.append("  failed by diagnosis: " + ", ".join(f"{d.diagnosis} {d.calls}" for d in calls.failed_by_diagnosis))
    if len(calls.steps) > 1:
        rows = [[f"{step.offered_rate_per_s:g}/s", number(step.start_s), step.calls_offered, step.turns,
                 number(step.roundtrip_p95_ms) if step.roundtrip_p95_ms is not None else
                 ("no reply" if step.no_reply_turns else "-"), step.band or "-",
                 number(step.concurrent_calls_mean)] for step in calls.steps]
        lines.append(table(["rate", "from s", "calls", "turns", "roundtrip p95 ms", "band", "concurrent"], rows))
    lines.append(f"  knee: {calls.knee_text}")
    return "\n".join(lines)


def _diagnoses(diagnoses: Sequence[Diagnosis]) -> str:
    if not diagnoses:
        return "Diagnoses: none (no failed turns)"
    lines = ["Diagnoses"]
    for d in diagnoses:
        lines.append(f"  {d.count:>7} {percent(d.share):>6}  {d.code}: {d.headline}: {d.finding}")
        if d.causes:
            lines.append(f"                  likely causes: {'; '.join(d.causes)}")
        lines.append(f"                  fix: {'; '.join(d.fixes)}")
    return "\n".join(lines)


def _locust(locust: LocustSummary) -> str:
    lines = []
    if locust.failures:
        rows = [[f.occurrences, f.kind, f.name, f.error[:70]] for f in locust.failures[:MAX_ROWS]]
        lines += ["Locust failures (_failures.csv)", table(["count", "type", "name", "error"], rows)]
    if locust.exceptions:
        rows = [[e.count, e.message[:90]] for e in locust.exceptions[:MAX_ROWS]]
        lines += [
            "Exceptions in user code (_exceptions.csv): bugs in the load test, not the gateway",
            table(["count", "message"], rows),
        ]
    return "\n".join(lines)


def _lateness(lateness: SendLateness) -> str:
    if not lateness.turns:
        return f"Send lateness: unknown ({lateness.note})"
    lines = [
        f"Send lateness (frame sent - frame due): {lateness.status.upper()}",
        (
            f"  over turns of {lateness.per_turn}: p50 {number(lateness.turn_max_p50_ms)} ms, "
            f"p99 {number(lateness.turn_max_p99_ms)} ms; worst frame {number(lateness.max_ms)} ms; "
            f"{lateness.late_turns} turn(s) with a frame over {lateness.warn_ms:g} ms "
            f"({percent(lateness.late_share)})"
        ),
        f"  judged by: {lateness.judged_by}",
        f"  {lateness.explanation}",
    ]
    for name, figures in lateness.frame_level.items():
        lines.insert(
            1,
            f"  every frame of {name}: {figures.frames} frames, p50 {number(figures.p50_ms)} ms, "
            f"p99 {number(figures.p99_ms)} ms, max {number(figures.max_ms)} ms",
        )
    if len(lateness.per_worker) > 1:
        rows = [
            [w.worker, w.turns, number(w.frame_p99_ms), number(w.turn_max_p99_ms), number(w.max_ms)]
            for w in lateness.per_worker[:MAX_ROWS]
        ]
        lines.append(table(["worker", "turns", "every frame p99 ms", "turns' latest frame p99 ms", "max ms"], rows))
    return "\n".join(lines)


def _uplink(backlog: UplinkBacklog) -> str:
    if not backlog.turns:
        # older turns files have no such column: nothing to say, unless fast turns queued audio
        return f"Uplink (audio unsent at end of speech): {backlog.fast_note}" if backlog.fast_note else ""
    figures = (
        f"  p50 {number(backlog.p50_ms)} ms, p95 {number(backlog.p95_ms)} ms, max {number(backlog.max_ms)} ms; "
        f"{backlog.backlogged_turns} turn(s) over {backlog.warn_ms:g} ms"
    )
    lines = [
        f"Uplink (audio unsent at end of speech, real-time turns): {backlog.status.upper()}",
        figures,
        f"  {backlog.explanation}",
    ]
    if backlog.fast_note:
        lines.append(f"  {backlog.fast_note}")
    return "\n".join(lines)


def _by_network(profiles: Sequence[NetworkProfileSummary]) -> str:
    """Every metric's band by --network profile: the p50/p95 and the band of each, per profile."""
    if not profiles:
        return ""
    names = list(profiles[0].metrics)
    headers = ["profile", "turns", *(profiles[0].metrics[name].title for name in names),
               "backlog p50/p95 ms", "backlog max p95 ms"]
    rows = []
    for entry in profiles:
        cells: list[object] = [entry.profile or "(none)", entry.turns]
        for name in names:
            metric = entry.metrics[name]
            p = metric.percentiles
            cells.append(f"{number(p.p50)}/{number(p.p95)} {metric.band or '-'}")
        backlog = entry.uplink_backlog
        cells.append(f"{number(backlog.p50_ms)}/{number(backlog.p95_ms)}")
        cells.append(number(entry.uplink_backlog_max_p95_ms))
        rows.append(cells)
    return ("By network profile (--network, docs/networks.md): p50/p95 and band of each metric, real-time turns\n"
            + table(headers, rows))


def render_checks(checks: Sequence[Check]) -> str:
    if not checks:
        return ""
    failed = [c for c in checks if not c.passed]
    lines = [f"Gate: {len(checks) - len(failed)}/{len(checks)} passed"]
    lines += [f"  {'ok  ' if c.passed else 'FAIL'} {c.message}" for c in checks]
    return "\n".join(lines)


def render_comparison(comparison: Comparison) -> str:
    lines = [f"Comparison: baseline {comparison.baseline_prefix} -> candidate {comparison.candidate_prefix}"]
    if not comparison.exact:
        lines.append("  note: at least one run has no turns file; its percentiles are Locust's rounded ones")
    left_out = comparison.fast_left_out
    if left_out.baseline or left_out.candidate:
        lines.append(
            f"  real-time turns compared; fast-paced turns left out: baseline {left_out.baseline}, "
            f"candidate {left_out.candidate}"
        )
    rows = []
    for r in comparison.rows:
        delta = "-" if r.delta is None else f"{r.delta:+.1f}"
        pct = "-" if r.delta_pct is None else f"{r.delta_pct:+.1f}%"
        band = (
            "-"
            if r.baseline_band is None
            else (r.baseline_band if r.baseline_band == r.candidate_band else f"{r.baseline_band} -> {r.candidate_band}")
        )
        rows.append(
            [f"{r.metric}.{r.stat}", number(r.baseline), number(r.candidate), delta, pct, band,
             r.direction + (" *" if r.moved else "")]
        )  # fmt: skip
    lines.append(table(["metric", "baseline", "candidate", "delta", "delta %", "band", "change"], rows))
    rows = [[b.metric, b.baseline or "-", b.candidate or "-", b.change] for b in comparison.bands]
    lines += ["  overall bands", table(["metric", "baseline", "candidate", "change"], rows, "    ")]
    rows = [
        [
            s.name,
            percent(s.baseline, 2),
            percent(s.candidate, 2),
            "-" if s.delta is None else f"{s.delta * 100:+.2f} pt",
            s.direction + (" *" if s.moved else ""),
        ]
        for s in comparison.scalars
    ]
    lines.append(table(["", "baseline", "candidate", "delta", "change"], rows))
    moved = ", ".join(comparison.moved) or "nothing"
    lines.append(f"  * moved (>= {comparison.moved_pct:g}% or across a band edge): {moved}")
    if comparison.worse:
        lines.append(f"  worse: {', '.join(comparison.worse)}")
    return "\n".join(lines)
