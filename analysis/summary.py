"""The typed summary of a run: every figure the terminal, the HTML page, report.json, the JUnit file
and the gate show, as frozen dataclasses, and its report.json form.

:func:`analysis.metrics.summarize` builds a :class:`RunSummary`; the writers read its attributes.
Its sections, in report.json's order::

    run             RunInfo          what was read; turns by pace (PaceCounts), duration, users, workers
    metrics         MetricSummary    per documented metric: Percentiles, BandCounts, band (mapping by name)
    audible         Audible          time to the first audible reply sample, beside the roundtrip
    timings         Timing           the timings with no documented band (mapping by column)
    intent          IntentSummary    accuracy overall, per utterance, per intent, confusion, per source
    intent_sources  IntentSources    turns judged from metadata, from the reply audio, not judged
    judge           JudgeAgreement   the reply judge against the metadata
    replies         ReplyAudio       reply formats, sample rates, audio duration, playback stalls (or None)
    diagnoses       Diagnosis        each failure code seen, with headline, causes and fixes
    fast            FastTurns        fast-paced turns, apart
    harness_errors  HarnessErrors    turns the harness itself broke, apart
    send_lateness   SendLateness     whether the load generator kept its send schedule
    uplink_backlog  UplinkBacklog    whether the link carried the audio in real time
    resources       ResourcesSummary CPU and memory of the load generators, the gateway, the reply judge
    locust          LocustSummary    Locust's requests by kind, failures and user-code exceptions
    verdict         Verdict          one level and one line
    calls           CallsSummary     an open-model run's calls and its knee (analysis.calls; only when
                                     the run has a PREFIX_calls.csv)

report.json is read by users' CI, so its shape is a contract: :meth:`RunSummary.to_json` writes
exactly the keys it always had, in the same order, a section's optional keys only where they
were written before (``tests/test_analysis_summary.py`` pins them). Records whose JSON is every
field in order inherit :class:`JsonRecord`; the others write their keys themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from analysis.stats import Percentiles

TURNS_MODE = "turns"
LOCUST_ONLY_MODE = "locust-only"


def to_json_value(value: Any) -> Any:
    """A summary value as JSON-ready data: records by their ``to_json``, tuples as lists."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(item) for item in value]
    return value


def frozen_mapping(items: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only view of ``items`` (in its order), for a mapping field of a frozen record."""
    return MappingProxyType(dict(items))


class JsonRecord:
    """A record whose JSON is every field, in declaration order."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: to_json_value(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


# --- run -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaceCounts(JsonRecord):
    """Turns of one pace (or of the whole run): how many, how many succeeded and failed."""

    turns: int | None
    succeeded: int | None
    failed: int
    failure_rate: float | None


@dataclass(frozen=True)
class RunInfo:
    """What was read and what the counted turns were; ``mode`` is ``turns`` or ``locust-only``.

    A turns-mode run has the per-turn fields (``succeeded``, ``cut_short``, ``realtime``...); a
    Locust-only run has ``requests`` instead and ``turns`` None. ``history``: Locust's
    _stats_history.csv was read (it gives ``peak_users``, and a Locust-only run its times).
    """

    prefix: str
    label: str
    target: str | None
    files: Mapping[str, str]
    missing: tuple[str, ...]
    mode: str
    percentile_source: str
    turns: int | None
    failed: int
    failure_rate: float | None
    succeeded: int | None = None
    requests: int | None = None
    cut_short: int = 0
    harness_errors: int = 0
    realtime: PaceCounts | None = None
    fast: PaceCounts | None = None
    start: str | None = None
    end: str | None = None
    duration_s: float | None = None
    turns_per_s: float | None = None
    workers: int | None = None
    users: int | None = None
    dialects: tuple[str, ...] = ()
    history: bool = False
    peak_users: int | None = None

    @property
    def by_turns(self) -> bool:
        return self.mode == TURNS_MODE

    @property
    def cut_short_note(self) -> str:
        if not self.cut_short:
            return ""
        return f"{self.cut_short} turn(s) cut short by the end of the run (run_stopped): not counted"

    @property
    def paced(self) -> PaceCounts:
        """The real-time turns' counts, as the verdict and the gate judge them (the whole run's for a
        Locust-only run, which has no pace)."""
        return self.realtime or PaceCounts(self.turns, self.succeeded, self.failed, self.failure_rate)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prefix": self.prefix,
            "label": self.label,
            "target": self.target,
            "files": dict(self.files),
            "missing": list(self.missing),
        }
        if self.by_turns:
            out["cut_short"] = self.cut_short
            if self.cut_short:
                out["cut_short_note"] = self.cut_short_note
            out["harness_errors"] = self.harness_errors
            out.update(
                mode=self.mode,
                percentile_source=self.percentile_source,
                turns=self.turns,
                succeeded=self.succeeded,
                failed=self.failed,
                failure_rate=self.failure_rate,
                realtime=to_json_value(self.realtime),
                fast=to_json_value(self.fast),
                start=self.start,
                end=self.end,
                duration_s=self.duration_s,
                turns_per_s=self.turns_per_s,
                workers=self.workers,
                users=self.users,
                dialects=list(self.dialects),
            )
        else:
            out.update(
                mode=self.mode,
                percentile_source=self.percentile_source,
                turns=self.turns,
                requests=self.requests,
                failed=self.failed,
                failure_rate=self.failure_rate,
            )
            if self.history:
                out.update(start=self.start, end=self.end, duration_s=self.duration_s)
        if self.history:
            out["peak_users"] = self.peak_users
        return out


# --- the documented metrics and the other timings ---------------------------------------------------


@dataclass(frozen=True)
class BandCount(JsonRecord):
    """How many turns (or users) fell in one band, and their share (None when there were none)."""

    band: str
    meaning: str
    count: int
    share: float | None


@dataclass(frozen=True)
class MetricSummary:
    """One documented metric: what it is, its percentiles, its band counts and its overall band.

    ``band_basis`` names the statistic the band is of (the p95; the p50 for chunks). ``source`` is
    ``turns``, ``locust`` (rounded percentiles, estimated shares) or None (not measured).
    ``received`` is the chunks received per turn (chunks, from the turns file only).
    """

    title: str
    unit: str
    column: str
    locust_kind: str
    per: str
    definition: str
    source: str | None
    exact: bool
    count: int
    percentiles: Percentiles
    bands: tuple[BandCount, ...]
    band: str | None
    band_basis: str
    note: str
    received: Percentiles | None = None

    @property
    def band_value(self) -> float | None:
        """The statistic the band is of."""
        return self.percentiles.stat(self.band_basis)

    def share(self, band: str) -> float | None:
        """The share of the turns in ``band`` (None when not measured)."""
        return next((row.share for row in self.bands if row.band == band), None)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: to_json_value(getattr(self, f.name)) for f in fields(self) if f.name != "received"}
        if self.received is not None:
            out["received"] = self.received.to_json()
        return out


@dataclass(frozen=True)
class Audible(JsonRecord):
    """Time to the first audible reply sample, and its lead over the roundtrip (not banded)."""

    count: int
    percentiles: Percentiles
    lead: Percentiles
    definition: str
    note: str


@dataclass(frozen=True)
class Timing:
    """A timing with no documented band: its title, unit, how many turns measured it, percentiles."""

    title: str
    unit: str
    count: int
    percentiles: Percentiles

    def to_json(self) -> dict[str, Any]:
        return {"title": self.title, "unit": self.unit, "count": self.count, **self.percentiles.to_json()}


# --- intents ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UtteranceAccuracy(JsonRecord):
    """One utterance: its expected intent, turns, accuracy and its most frequent wrong answer."""

    utterance: str
    expected: str | None
    turns: int
    correct: int
    accuracy: float
    top_wrong: str | None
    top_wrong_count: int


@dataclass(frozen=True)
class IntentAccuracy(JsonRecord):
    """One expected intent: its accuracy, and its precision (of the turns recognised as it)."""

    intent: str
    turns: int
    correct: int
    accuracy: float
    recognised_as_it: int
    precision: float | None


@dataclass(frozen=True)
class Confusion(JsonRecord):
    """Rows: expected intents, columns: recognised ones (``(none)``: nothing recognised)."""

    expected: tuple[str, ...] = ()
    recognised: tuple[str, ...] = ()
    counts: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class SourceAccuracy(JsonRecord):
    """Intent accuracy of the turns judged from one source (metadata or reply audio)."""

    source: str
    title: str
    turns: int
    correct: int
    accuracy: float


@dataclass(frozen=True)
class NotJudgedReason(JsonRecord):
    reason: str
    turns: int


@dataclass(frozen=True)
class NotJudged(JsonRecord):
    """Turns with an expected intent that were not judged, by reason (their diagnosis)."""

    turns: int
    reasons: tuple[NotJudgedReason, ...]


@dataclass(frozen=True)
class IntentSummary:
    """Intent accuracy of the judged turns, overall, per utterance (worst first) and per intent.

    ``source`` is ``turns``, ``locust`` or None; ``by_source`` and ``not_judged`` come from the
    turns file, ``note`` says what a Locust-only figure cannot show.
    """

    source: str | None
    turns: int
    correct: int
    accuracy: float | None
    per_utterance: tuple[UtteranceAccuracy, ...] = ()
    per_intent: tuple[IntentAccuracy, ...] = ()
    confusion: Confusion = field(default_factory=Confusion)
    by_source: tuple[SourceAccuracy, ...] | None = None
    not_judged: NotJudged | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "source": self.source,
            "turns": self.turns,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "per_utterance": to_json_value(self.per_utterance),
            "per_intent": to_json_value(self.per_intent),
            "confusion": self.confusion.to_json(),
        }
        if self.by_source is not None:
            out["by_source"] = to_json_value(self.by_source)
        if self.not_judged is not None:
            out["not_judged"] = self.not_judged.to_json()
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class SourceCount(JsonRecord):
    source: str  # "metadata", "audio", or "" for not judged
    title: str
    turns: int
    share: float | None


@dataclass(frozen=True)
class IntentSources:
    """Turns per intent source; ``recorded``: the turns file has the intent_source column."""

    turns: int
    rows: tuple[SourceCount, ...]
    recorded: bool
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"turns": self.turns, "rows": to_json_value(self.rows), "recorded": self.recorded}
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class JudgeConfusion(JsonRecord):
    """Rows: the metadata's intent, columns: the intent heard in the reply audio."""

    metadata: tuple[str, ...] = ()
    audio: tuple[str, ...] = ()
    counts: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class JudgeAgreement:
    """The reply judge against the gateway's metadata, over the turns judged both ways."""

    turns: int
    agreed: int
    agreement: float | None
    audio_only_turns: int
    confusion: JudgeConfusion
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "turns": self.turns,
            "agreed": self.agreed,
            "agreement": self.agreement,
            "audio_only_turns": self.audio_only_turns,
            "confusion": self.confusion.to_json(),
        }
        if self.note is not None:
            out["note"] = self.note
        return out


# --- replies and failures --------------------------------------------------------------------------


@dataclass(frozen=True)
class FormatCount(JsonRecord):
    format: str
    turns: int
    share: float | None


@dataclass(frozen=True)
class RateCount(JsonRecord):
    sample_rate_hz: int
    turns: int


@dataclass(frozen=True)
class PlaybackStalls(JsonRecord):
    """Replies streamed as frames whose audio would have run out had it been played as it came."""

    turns: int
    stalled_turns: int
    share: float | None
    total: int
    max: int | None


@dataclass(frozen=True)
class ReplyAudio(JsonRecord):
    """What came back: reply formats, sample rates, audio duration, playback stalls."""

    formats: tuple[FormatCount, ...]
    sample_rates: tuple[RateCount, ...]
    audio_ms: Percentiles
    audio_count: int
    playback_stalls: PlaybackStalls


@dataclass(frozen=True)
class Diagnosis(JsonRecord):
    """One failure code seen: how often, and what it means (``known``: one of the documented codes)."""

    code: str
    count: int
    share: float | None
    known: bool
    headline: str
    finding: str
    causes: tuple[str, ...]
    fixes: tuple[str, ...]


@dataclass(frozen=True)
class FastTurns:
    """Fast-paced turns on their own: counts, failures, accuracy and timings, never banded.

    With no fast-paced turn only ``turns`` (0) and ``note`` are set.
    """

    turns: int
    note: str
    succeeded: int = 0
    failed: int = 0
    failure_rate: float | None = None
    roundtrip: Percentiles = field(default_factory=Percentiles)
    latency: Percentiles = field(default_factory=Percentiles)
    timings: Mapping[str, Timing] = field(default_factory=lambda: frozen_mapping({}))
    intent: IntentSummary | None = None
    diagnoses: tuple[Diagnosis, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if not self.turns:
            return {"turns": self.turns, "note": self.note}
        intent = self.intent.to_json() if self.intent is not None else {}
        return {
            "turns": self.turns,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "failure_rate": self.failure_rate,
            "note": self.note,
            "roundtrip": self.roundtrip.to_json(),
            "latency": self.latency.to_json(),
            "timings": to_json_value(self.timings),
            "intent": {key: intent.get(key) for key in ("turns", "correct", "accuracy", "not_judged")},
            "diagnoses": [
                {"code": d.code, "count": d.count, "headline": d.headline, "finding": d.finding}
                for d in self.diagnoses
            ],
        }


@dataclass(frozen=True)
class HarnessErrors(JsonRecord):
    """Turns the harness itself broke (harness_error): counted apart, with the advice and examples."""

    count: int
    share: float | None
    headline: str
    finding: str
    advice: str
    examples: tuple[str, ...]


# --- the load generator and the link ---------------------------------------------------------------


@dataclass(frozen=True)
class FrameLateness:
    """One load generator's send lateness over every frame it sent (from the run status)."""

    frames: int
    p50_ms: float
    p99_ms: float
    max_ms: float | None = None  # None: the run status did not say

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"frames": self.frames, "p50_ms": self.p50_ms, "p99_ms": self.p99_ms}
        if self.max_ms is not None:
            out["max_ms"] = self.max_ms
        return out


@dataclass(frozen=True)
class WorkerLateness(JsonRecord):
    worker: str
    turns: int
    turn_max_p99_ms: float
    max_ms: float
    frame_p99_ms: float | None


@dataclass(frozen=True)
class SendLateness:
    """Did the load generator keep its send schedule? ``status`` is ``kept up``, ``strained``,
    ``bottleneck`` or ``unknown`` (no lateness recorded; then only ``note`` says why)."""

    turns: int
    status: str
    note: str = ""
    per_turn: str = ""
    turn_max_p50_ms: float | None = None
    turn_max_p99_ms: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    late_turns: int = 0
    late_share: float | None = None
    warn_ms: float | None = None
    bottleneck_ms: float | None = None
    judged_by: str = ""
    frame_level: Mapping[str, FrameLateness] = field(default_factory=lambda: frozen_mapping({}))
    explanation: str = ""
    per_worker: tuple[WorkerLateness, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if not self.turns:
            return {"turns": self.turns, "status": self.status, "note": self.note}
        return {
            "turns": self.turns,
            "per_turn": self.per_turn,
            "turn_max_p50_ms": self.turn_max_p50_ms,
            "turn_max_p99_ms": self.turn_max_p99_ms,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "late_turns": self.late_turns,
            "late_share": self.late_share,
            "warn_ms": self.warn_ms,
            "bottleneck_ms": self.bottleneck_ms,
            "status": self.status,
            "judged_by": self.judged_by,
            "frame_level": to_json_value(self.frame_level),
            "explanation": self.explanation,
            "per_worker": to_json_value(self.per_worker),
        }


@dataclass(frozen=True)
class UplinkBacklog:
    """Audio still queued in the kernel at end of speech: ``status`` is ``real time``, ``backlogged``
    or ``unknown`` (then ``note`` says why). ``fast_note`` names fast-paced outliers, left out."""

    turns: int
    status: str
    fast_outliers: int
    fast_note: str
    note: str = ""
    p50_ms: float | None = None
    p95_ms: float | None = None
    max_ms: float | None = None
    backlogged_turns: int = 0
    warn_ms: float | None = None
    explanation: str = ""

    def to_json(self) -> dict[str, Any]:
        if not self.turns:
            return {"turns": self.turns, "status": self.status, "note": self.note,
                    "fast_outliers": self.fast_outliers, "fast_note": self.fast_note}  # fmt: skip
        return {
            "turns": self.turns,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "max_ms": self.max_ms,
            "backlogged_turns": self.backlogged_turns,
            "warn_ms": self.warn_ms,
            "status": self.status,
            "explanation": self.explanation,
            "fast_outliers": self.fast_outliers,
            "fast_note": self.fast_note,
        }


# --- resources and Locust's own files --------------------------------------------------------------


@dataclass(frozen=True)
class WorkerResources(JsonRecord):
    worker: str
    samples: int
    cpu_p50_percent: float | None
    cpu_max_percent: float | None
    rss_max_mb: float | None
    saturated: bool


@dataclass(frozen=True)
class GatewayResources(JsonRecord):
    """The gateway's CPU and memory; ``counted`` says what they count (main process or tree)."""

    cpu_column: str | None
    rss_column: str | None
    scope: str
    counted: str
    cpu_p50_percent: float | None
    cpu_max_percent: float | None
    rss_max_mb: float | None


@dataclass(frozen=True)
class JudgeResources(JsonRecord):
    cpu_p50_percent: float | None
    cpu_max_percent: float | None
    counted: str


@dataclass(frozen=True)
class ResourcesSummary:
    """CPU and memory per load generator, of the gateway and of the reply judge (``file_read``:
    the run has a _resources.csv)."""

    samples: int
    workers: tuple[WorkerResources, ...]
    gateway: GatewayResources | None
    note: str
    judge: JudgeResources | None = None
    saturated_percent: float | None = None
    file_read: bool = True

    def to_json(self) -> dict[str, Any]:
        workers = to_json_value(self.workers)
        gateway = to_json_value(self.gateway)
        if not self.file_read:
            return {"samples": self.samples, "workers": workers, "gateway": gateway, "note": self.note}
        return {"samples": self.samples, "workers": workers, "gateway": gateway, "judge": to_json_value(self.judge),
                "saturated_percent": self.saturated_percent, "note": self.note}  # fmt: skip


@dataclass(frozen=True)
class KindCount(JsonRecord):
    requests: int
    failures: int


@dataclass(frozen=True)
class LocustFailure(JsonRecord):
    kind: str
    name: str
    error: str
    occurrences: int
    diagnosis: str | None


@dataclass(frozen=True)
class LocustException(JsonRecord):
    count: int
    message: str
    nodes: str


@dataclass(frozen=True)
class LocustSummary(JsonRecord):
    """Locust's own files: requests and failures per request type, failures, user-code exceptions."""

    requests_by_kind: Mapping[str, KindCount]
    failures: tuple[LocustFailure, ...]
    exceptions: tuple[LocustException, ...]

    @property
    def exception_count(self) -> int:
        return sum(e.count for e in self.exceptions)


# --- the verdict and the whole summary -------------------------------------------------------------


@dataclass(frozen=True)
class Verdict(JsonRecord):
    """One level for the run (``ok``, ``warning``, ``problem``), why, and the line that says it."""

    level: str
    problems: tuple[str, ...]
    warnings: tuple[str, ...]
    fast_left_out: int
    text: str



@dataclass(frozen=True)
class NetworkProfileSummary(JsonRecord):
    """The real-time turns of one ``--network`` profile (docs/networks.md): each documented metric
    and its band over them alone, and their uplink backlog (the emulated link's, which the profile
    predicts). ``profile`` is "" for turns on the machine's own link."""

    profile: str
    turns: int
    metrics: Mapping[str, MetricSummary]
    uplink_backlog: UplinkBacklog
    uplink_backlog_max_p95_ms: float | None = None


@dataclass(frozen=True)
class RunSummary:
    """Every figure of the analysis of one run (see the module docstring)."""

    run: RunInfo
    metrics: Mapping[str, MetricSummary]
    audible: Audible
    timings: Mapping[str, Timing]
    intent: IntentSummary
    intent_sources: IntentSources
    judge: JudgeAgreement
    replies: ReplyAudio | None
    diagnoses: tuple[Diagnosis, ...]
    fast: FastTurns
    harness_errors: HarnessErrors
    send_lateness: SendLateness
    uplink_backlog: UplinkBacklog
    resources: ResourcesSummary
    locust: LocustSummary
    verdict: Verdict
    # What --judge-replies did (analysis.saved_replies): saved replies, unreadable, matched and
    # judged turns. None when it was not asked for.
    judged_after_the_run: Mapping[str, int] | None = None
    # An open-model run's calls (analysis.calls.CallsSummary, from PREFIX_calls.csv); None without one
    calls: Any = None
    # Every band again by --network profile, when any turn ran on an emulated link (else empty)
    by_network: tuple[NetworkProfileSummary, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The run's entry in report.json's ``runs`` (``calls`` only for a run that has a calls file,
        ``by_network`` only for one that used --network)."""
        optional = ("judged_after_the_run", "calls", "by_network")
        out = {f.name: to_json_value(getattr(self, f.name)) for f in fields(self) if f.name not in optional}
        if self.judged_after_the_run is not None:
            out["judged_after_the_run"] = dict(self.judged_after_the_run)
        if self.calls is not None:
            out["calls"] = self.calls.to_json()
        if self.by_network:
            out["by_network"] = to_json_value(self.by_network)
        return out
