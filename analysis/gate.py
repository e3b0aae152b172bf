"""The pass/fail gate: thresholds such as ``roundtrip.p95<500`` checked against a summary.

Grammar of one threshold (spaces allowed around the operator)::

    NAME OP VALUE          OP is one of  <  <=  >  >=  ==  !=
    roundtrip.p95<500      a statistic of a metric: p50 p90 p95 p99 max min mean count
    latency.p99<=100ms     an ``ms`` unit is accepted (and ``s``: 1s == 1000)
    intent.accuracy>=0.98  accuracy as a fraction; ``98%`` means the same
    roundtrip.share.bad<=0.01   the share of turns in one band
    band.roundtrip<=good   a band: ``<=`` means "this band or better" (bands are ordered best first)
    failures.rate<0.01     also failures.count, turns.count, send_lateness.p99, locust.exceptions
    uplink_backlog.p95<100 audio still unsent at end of speech (p50 p95 max), ms
    audible.p95<800        time to the first audible reply sample (p50 p90 p95 p99 max count), ms
    judge.agreement>=0.98  the reply judge agrees with the gateway's metadata (also judge.turns)
    harness_errors.count<=0  turns the harness itself broke (counted apart from the gateway's failures)
    fast.failures.rate<0.01  fast-paced turns, apart: fast.turns, fast.failures.count, fast.roundtrip.p95
    calls.knee>=5          an open-model run's calls: the knee in calls/s (inf when not reached), also
                           calls.offered, calls.started, calls.not_started (the harness's limits),
                           calls.failures.rate (failed / started), calls.setup.p95 (ms)

Every figure except ``fast.*`` is over real-time turns, as the report shows it: ``failures.*``
count the real-time turns' failures, ``turns.count`` every counted turn of either pace.
``send_lateness.p99`` is the p99 the load generator is judged by (over every frame sent when
the run status has it, else over turns of each turn's latest frame).

``--gate`` takes one or more thresholds (comma- or semicolon-separated, or repeat the option);
``--gate-file`` reads them from a file, one or more a line, ``#`` starting a comment.

A threshold that cannot be parsed, or names something the analysis does not measure, is a
:class:`~voiceharness.errors.UsageError` (exit 2). A threshold whose value this run did not
measure (chunks without a turns file, say) fails, saying so.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from analysis.summary import RunSummary
from voiceharness import bands
from voiceharness.errors import UsageError

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}
METRIC_NAMES = (bands.ROUNDTRIP, bands.LATENCY, bands.CHUNKS, bands.RECONNECTIONS)
ALIASES = {"ping": bands.LATENCY, "reconnects": bands.RECONNECTIONS, "median": "p50"}
STATS = ("p50", "p90", "p95", "p99", "max", "min", "mean", "count")
OTHER_NAMES = (
    "intent.accuracy",
    "intent.turns",
    "failures.count",
    "failures.rate",
    "turns.count",
    "send_lateness.p50",
    "send_lateness.p99",
    "send_lateness.max",
    "uplink_backlog.p50",
    "uplink_backlog.p95",
    "uplink_backlog.max",
    "locust.exceptions",
    "audible.p50",
    "audible.p90",
    "audible.p95",
    "audible.p99",
    "audible.max",
    "audible.count",
    "judge.agreement",
    "judge.turns",
    "intent.not_judged",
    "harness_errors.count",
    "playback_stalls.share",
    "fast.turns",
    "fast.failures.count",
    "fast.failures.rate",
    "calls.offered",
    "calls.started",
    "calls.not_started",
    "calls.failures.rate",
    "calls.setup.p95",
    "calls.knee",
    "fast.roundtrip.p50",
    "fast.roundtrip.p95",
    "fast.roundtrip.p99",
)
_EXPRESSION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=|==|!=|<|>)\s*(.+?)\s*$")
_NUMBER = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(ms|s|%)?$")


@dataclass(frozen=True)
class Threshold:
    text: str  # as the user wrote it
    name: str  # canonical, e.g. "roundtrip.p95" or "band.roundtrip"
    op: str
    value: float | str  # a number, or a band name for band.*

    @property
    def is_band(self) -> bool:
        return self.name.startswith("band.")


@dataclass(frozen=True)
class Check:
    threshold: Threshold
    measured: float | str | None
    passed: bool
    message: str

    @property
    def measured_text(self) -> str:
        return "not measured" if self.measured is None else format_value(self.threshold.name, self.measured)


def known_names() -> list[str]:
    names = [f"{m}.{s}" for m in METRIC_NAMES for s in STATS]
    names += [f"{m}.share.{b.replace(' ', '_')}" for m in METRIC_NAMES for b in bands.BANDS[m]]
    names += [f"band.{m}" for m in METRIC_NAMES]
    return names + list(OTHER_NAMES)


def _canonical(name: str) -> str:
    parts = [ALIASES.get(part, part) for part in name.lower().split(".")]
    return ".".join(parts)


def _band_name(metric: str, text: str) -> str:
    wanted = text.strip().strip("'\"").lower().replace("_", " ").replace("-", " ")
    for band in bands.BANDS[metric]:
        if band == wanted or band.split()[0] == wanted:
            return band
    raise ValueError(f"unknown band {text!r} for {metric}. Choose one of {', '.join(bands.BANDS[metric])}")


def parse(text: str) -> Threshold:
    """One threshold; raises :class:`UsageError` naming what is wrong and the accepted forms."""
    match = _EXPRESSION.match(text)
    if not match:
        raise UsageError(
            f"gate {text!r}: not a threshold. Write NAME OP VALUE, e.g. 'roundtrip.p95<500' or "
            "'band.roundtrip<=good' (OP: < <= > >= == !=)"
        )
    raw_name, op, raw_value = match.groups()
    name = _canonical(raw_name)
    if name.startswith("band."):
        metric = name.split(".", 1)[1]
        if metric not in METRIC_NAMES:
            raise UsageError(
                f"gate {text!r}: unknown metric {metric!r}. Bands exist for {', '.join(METRIC_NAMES)}"
            )
        try:
            return Threshold(text.strip(), name, op, _band_name(metric, raw_value))
        except ValueError as error:
            raise UsageError(f"gate {text!r}: {error}") from None
    parts = name.split(".")
    if len(parts) == 3 and parts[0] in METRIC_NAMES and parts[1] == "share":
        try:
            name = f"{parts[0]}.share.{_band_name(parts[0], parts[2]).replace(' ', '_')}"
        except ValueError as error:
            raise UsageError(f"gate {text!r}: {error}") from None
    if name not in known_names():
        raise UsageError(
            f"gate {text!r}: unknown name {raw_name!r}. Use a metric statistic "
            f"({'/'.join(METRIC_NAMES)} . {'/'.join(STATS)}), band.METRIC, METRIC.share.BAND "
            f"or one of {', '.join(OTHER_NAMES)}"
        )
    number = _NUMBER.match(raw_value.strip())
    if not number:
        raise UsageError(
            f"gate {text!r}: {raw_value!r} is not a number. Write a number, optionally with a unit "
            "(ms, s, %), e.g. roundtrip.p95<500ms"
        )
    value = float(number.group(1))
    unit = number.group(2)
    if unit == "s":
        value *= 1000.0
    elif unit == "%":
        value /= 100.0
    return Threshold(text.strip(), name, op, value)


def split_expressions(texts: Iterable[str]) -> list[str]:
    """Thresholds from option values or file lines: separated by ',' or ';', '#' comments dropped."""
    result = []
    for text in texts:
        text = text.split("#", 1)[0]
        result.extend(part.strip() for part in re.split(r"[;,]", text) if part.strip())
    return result


def read_gate_file(path: str) -> list[str]:
    """The thresholds written in ``path``; raises :class:`UsageError` if it cannot be read."""
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except FileNotFoundError:
        raise UsageError(f"{path}: gate file not found. Check the --gate-file path") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: gate file cannot be read ({error}). Write one threshold a line") from None
    expressions = split_expressions(lines)
    if not expressions:
        raise UsageError(f"{path}: gate file holds no threshold. Write one a line, e.g. roundtrip.p95<500")
    return expressions


def parse_all(texts: Iterable[str]) -> list[Threshold]:
    return [parse(text) for text in split_expressions(texts)]


def measurements(summary: RunSummary) -> dict[str, float | str | None]:
    """Every value a threshold can name, read from a summary (None = not measured in this run)."""
    values: dict[str, float | str | None] = {}
    for metric in METRIC_NAMES:
        entry = summary.metrics[metric]
        for stat in STATS:
            values[f"{metric}.{stat}"] = entry.count if stat == "count" else entry.percentiles.stat(stat)
        values[f"band.{metric}"] = entry.band
        for band in bands.BANDS[metric]:
            values[f"{metric}.share.{band.replace(' ', '_')}"] = entry.share(band)
    run, intent, lateness = summary.run, summary.intent, summary.send_lateness
    values["intent.accuracy"] = intent.accuracy
    values["intent.turns"] = intent.turns or None
    paced = run.paced  # real-time turns, as the verdict; Locust-only runs have no pace
    values["failures.count"] = paced.failed
    values["failures.rate"] = paced.failure_rate
    values["turns.count"] = run.turns
    values["send_lateness.p50"] = lateness.p50_ms
    values["send_lateness.p99"] = lateness.p99_ms
    values["send_lateness.max"] = lateness.max_ms
    backlog = summary.uplink_backlog
    values["uplink_backlog.p50"] = backlog.p50_ms
    values["uplink_backlog.p95"] = backlog.p95_ms
    values["uplink_backlog.max"] = backlog.max_ms
    values["locust.exceptions"] = summary.locust.exception_count
    for stat in ("p50", "p90", "p95", "p99", "max"):
        values[f"audible.{stat}"] = summary.audible.percentiles.stat(stat)
    values["audible.count"] = summary.audible.count or None
    values["judge.agreement"] = summary.judge.agreement
    values["judge.turns"] = summary.judge.turns if run.by_turns else None
    values["intent.not_judged"] = intent.not_judged.turns if intent.not_judged is not None else None
    values["harness_errors.count"] = summary.harness_errors.count
    values["playback_stalls.share"] = summary.replies.playback_stalls.share if summary.replies is not None else None
    fast = summary.fast
    values["fast.turns"] = fast.turns if run.by_turns else None
    values["fast.failures.count"] = fast.failed if run.by_turns else None
    values["fast.failures.rate"] = fast.failure_rate
    for stat in ("p50", "p95", "p99"):
        values[f"fast.roundtrip.{stat}"] = fast.roundtrip.stat(stat)
    values.update(_call_measurements(summary.calls))
    return values


def _call_measurements(calls) -> dict[str, float | None]:  # analysis.calls.CallsSummary, None without calls
    if calls is None:
        return dict.fromkeys(("calls.offered", "calls.started", "calls.not_started", "calls.failures.rate",
                              "calls.setup.p95", "calls.knee"))
    judged = any(step.band is not None for step in calls.steps)
    knee = calls.knee_rate_per_s if calls.knee_rate_per_s is not None else (math.inf if judged else None)
    return {
        "calls.offered": calls.offered,
        "calls.started": calls.started,
        "calls.not_started": calls.not_started_on_time + calls.harness_limit,
        "calls.failures.rate": calls.failed / calls.started if calls.started else None,
        "calls.setup.p95": calls.setup_ms.p95,
        "calls.knee": knee,  # not reached: above every rate offered
    }


def format_value(name: str, value: float | str | None) -> str:
    if value is None or isinstance(value, str):
        return str(value)
    if name.endswith((".accuracy", ".rate", ".agreement", ".share")) or ".share." in name:
        return f"{value:.4g} ({value:.2%})"
    unit = (
        " ms"
        if (
            name.split(".")[0] in (bands.ROUNDTRIP, bands.LATENCY, "send_lateness", "uplink_backlog", "audible")
            or name.startswith(("fast.roundtrip.", "calls.setup."))
        )
        and not name.endswith(".count")
        else " calls/s" if name == "calls.knee" else ""
    )
    return f"{value:.6g}{unit}"


def evaluate(thresholds: Iterable[Threshold], summary: RunSummary) -> list[Check]:
    """Check each threshold against the summary, in the order given."""
    values = measurements(summary)
    checks = []
    for threshold in thresholds:
        measured = values.get(threshold.name)
        if measured is None or (isinstance(measured, float) and math.isnan(measured)):
            why = "" if summary.run.by_turns else " (needs the turns file)"
            checks.append(
                Check(
                    threshold,
                    None,
                    False,
                    f"{threshold.text}: FAILED, {threshold.name} not measured in this run{why}",
                )
            )
            continue
        if threshold.is_band:
            metric = threshold.name.split(".", 1)[1]
            passed = OPERATORS[threshold.op](
                bands.band_rank(metric, str(measured)), bands.band_rank(metric, str(threshold.value))
            )
        else:
            passed = OPERATORS[threshold.op](float(measured), float(threshold.value))
        verdict = "passed" if passed else "FAILED"
        checks.append(
            Check(
                threshold,
                measured,
                passed,
                f"{threshold.text}: {verdict}, measured {threshold.name} = {format_value(threshold.name, measured)}",
            )
        )
    return checks
