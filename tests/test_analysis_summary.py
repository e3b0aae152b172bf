"""analysis.summary: report.json keeps its exact keys (users' CI reads it), and the summary is frozen.

The key lists below were taken from report.json as the analysis wrote it before the summary was
typed, for the same two runs: a turns file with every kind of turn (fast-paced, harness errors,
cut short, judged by ear and cross-checked, stalled) beside Locust's CSVs, a resources file and a
run status; and a Locust-only run. A key renamed, moved, added or dropped fails here: change
report.json's schema_version and say so in the release notes before changing these lists.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from analysis_fixtures import copy_run, make_records, shared_locust_run, write_turns

from analysis import exports, metrics, readers


def key_paths(value: object, path: str = "") -> list[str]:
    """Every key of a JSON value, depth first in order: ``run.realtime.turns``, ``diagnoses[].code``
    (a list's keys are those of its first element)."""
    if isinstance(value, dict):
        paths = []
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            paths += [here, *key_paths(item, here)]
        return paths
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return key_paths(value[0], path + "[]")
    return []


def by_section(paths: list[str]) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    for path in paths:
        section = re.match(r"[^.\[]+", path).group(0)
        rest = path[len(section) :].lstrip(".")
        sections.setdefault(section, [])
        if rest:
            sections[section].append(rest)
    return sections


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """report.json's entry for each of the two runs."""
    folder = tmp_path_factory.mktemp("summary")
    locust = shared_locust_run(tmp_path_factory)
    turns_prefix = copy_run(locust, folder / "turns", "run")
    records = make_records(300, fast_share=0.15, harness_error_share=0.02, audio_judged_share=0.2,
                           cross_checked_share=0.3, judge_wrong_share=0.1, stall_share=0.1)  # fmt: skip
    records[:3] = [replace(r, success=False, failure="run_stopped") for r in records[:3]]
    write_turns(turns_prefix, records)
    Path(turns_prefix + "_resources.csv").write_text(
        "timestamp,worker,users,worker_cpu_percent,worker_rss_mb,gateway_cpu_percent,gateway_rss_mb,gateway_scope,"
        "judge_cpu_percent\n100,host:1,5,12,80,30,120,process tree,5\n102,host:1,5,20,81,40,121,process tree,7\n"
    )
    Path(turns_prefix + "_run.json").write_text(json.dumps({
        "turns_started": 300, "target": "ws://127.0.0.1:7090/ws/audio",
        "send_lateness": {"host:1": {"frames": 5000, "p50_ms": 0.7, "p99_ms": 3.9, "max_ms": 12.0}},
    }))  # fmt: skip
    locust_prefix = copy_run(locust, folder / "locust", "run")
    return {
        name: json.loads(exports.to_json([metrics.summarize(readers.read_run(prefix))]))["runs"][0]
        for name, prefix in (("turns", turns_prefix), ("locust-only", locust_prefix))
    }


@pytest.mark.parametrize("name", ["turns", "locust-only"])
def test_report_json_keeps_every_key_of_every_section_in_its_order(runs, name):
    pinned = TURNS_RUN_KEYS if name == "turns" else LOCUST_ONLY_RUN_KEYS
    written = by_section(key_paths(runs[name]))
    assert list(written) == list(pinned)  # the sections, in order
    for section, keys in pinned.items():
        assert written[section] == keys.split(), section


def test_the_summary_is_frozen(tmp_path):
    write_turns(tmp_path / "run", make_records(20))
    summary = metrics.summarize(readers.read_run(str(tmp_path / "run")))
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.verdict = summary.verdict  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        summary.metrics["roundtrip"].band = "excellent"  # type: ignore[misc]
    with pytest.raises(TypeError):
        summary.metrics["roundtrip"] = summary.metrics["latency"]  # type: ignore[index]


TURNS_RUN_KEYS = {
    "run": (
        "prefix label target files files.turns files.stats files.history files.failures files.exceptions "
        "files.run_status files.resources missing cut_short cut_short_note harness_errors mode "
        "percentile_source turns succeeded failed failure_rate realtime realtime.turns realtime.succeeded "
        "realtime.failed realtime.failure_rate fast fast.turns fast.succeeded fast.failed "
        "fast.failure_rate start end duration_s turns_per_s workers users dialects peak_users"
    ),
    "metrics": (
        "roundtrip roundtrip.title roundtrip.unit roundtrip.column roundtrip.locust_kind roundtrip.per "
        "roundtrip.definition roundtrip.source roundtrip.exact roundtrip.count roundtrip.percentiles "
        "roundtrip.percentiles.p50 roundtrip.percentiles.p90 roundtrip.percentiles.p95 "
        "roundtrip.percentiles.p99 roundtrip.percentiles.max roundtrip.percentiles.min "
        "roundtrip.percentiles.mean roundtrip.bands roundtrip.bands[].band roundtrip.bands[].meaning "
        "roundtrip.bands[].count roundtrip.bands[].share roundtrip.band roundtrip.band_basis "
        "roundtrip.note latency latency.title latency.unit latency.column latency.locust_kind latency.per "
        "latency.definition latency.source latency.exact latency.count latency.percentiles "
        "latency.percentiles.p50 latency.percentiles.p90 latency.percentiles.p95 latency.percentiles.p99 "
        "latency.percentiles.max latency.percentiles.min latency.percentiles.mean latency.bands "
        "latency.bands[].band latency.bands[].meaning latency.bands[].count latency.bands[].share "
        "latency.band latency.band_basis latency.note chunks chunks.title chunks.unit chunks.column "
        "chunks.locust_kind chunks.per chunks.definition chunks.source chunks.exact chunks.count "
        "chunks.percentiles chunks.percentiles.p50 chunks.percentiles.p90 chunks.percentiles.p95 "
        "chunks.percentiles.p99 chunks.percentiles.max chunks.percentiles.min chunks.percentiles.mean "
        "chunks.bands chunks.bands[].band chunks.bands[].meaning chunks.bands[].count "
        "chunks.bands[].share chunks.band chunks.band_basis chunks.note chunks.received "
        "chunks.received.p50 chunks.received.p90 chunks.received.p95 chunks.received.p99 "
        "chunks.received.max chunks.received.min chunks.received.mean reconnections reconnections.title "
        "reconnections.unit reconnections.column reconnections.locust_kind reconnections.per "
        "reconnections.definition reconnections.source reconnections.exact reconnections.count "
        "reconnections.percentiles reconnections.percentiles.p50 reconnections.percentiles.p90 "
        "reconnections.percentiles.p95 reconnections.percentiles.p99 reconnections.percentiles.max "
        "reconnections.percentiles.min reconnections.percentiles.mean reconnections.bands "
        "reconnections.bands[].band reconnections.bands[].meaning reconnections.bands[].count "
        "reconnections.bands[].share reconnections.band reconnections.band_basis reconnections.note"
    ),
    "audible": (
        "count percentiles percentiles.p50 percentiles.p90 percentiles.p95 percentiles.p99 "
        "percentiles.max percentiles.min percentiles.mean lead lead.p50 lead.p90 lead.p95 lead.p99 "
        "lead.max lead.min lead.mean definition note"
    ),
    "timings": (
        "audible_ms audible_ms.title audible_ms.unit audible_ms.count audible_ms.p50 audible_ms.p90 "
        "audible_ms.p95 audible_ms.p99 audible_ms.max audible_ms.min audible_ms.mean "
        "client_tail_ms client_tail_ms.title client_tail_ms.unit client_tail_ms.count client_tail_ms.p50 client_tail_ms.p90 client_tail_ms.p95 client_tail_ms.p99 client_tail_ms.max client_tail_ms.min client_tail_ms.mean gateway_response_ms gateway_response_ms.title gateway_response_ms.unit gateway_response_ms.count gateway_response_ms.p50 gateway_response_ms.p90 gateway_response_ms.p95 gateway_response_ms.p99 gateway_response_ms.max gateway_response_ms.min gateway_response_ms.mean intent_ms "
        "intent_ms.title intent_ms.unit intent_ms.count intent_ms.p50 intent_ms.p90 intent_ms.p95 "
        "intent_ms.p99 intent_ms.max intent_ms.min intent_ms.mean reply_ms reply_ms.title reply_ms.unit "
        "reply_ms.count reply_ms.p50 reply_ms.p90 reply_ms.p95 reply_ms.p99 reply_ms.max reply_ms.min "
        "reply_ms.mean connect_ms connect_ms.title connect_ms.unit connect_ms.count connect_ms.p50 "
        "connect_ms.p90 connect_ms.p95 connect_ms.p99 connect_ms.max connect_ms.min connect_ms.mean "
        "reply_audio_ms reply_audio_ms.title reply_audio_ms.unit reply_audio_ms.count reply_audio_ms.p50 "
        "reply_audio_ms.p90 reply_audio_ms.p95 reply_audio_ms.p99 reply_audio_ms.max reply_audio_ms.min "
        "reply_audio_ms.mean"
    ),
    "intent": (
        "source turns correct accuracy per_utterance per_utterance[].utterance per_utterance[].expected "
        "per_utterance[].turns per_utterance[].correct per_utterance[].accuracy per_utterance[].top_wrong "
        "per_utterance[].top_wrong_count per_intent per_intent[].intent per_intent[].turns "
        "per_intent[].correct per_intent[].accuracy per_intent[].recognised_as_it per_intent[].precision "
        "confusion confusion.expected confusion.recognised confusion.counts by_source by_source[].source "
        "by_source[].title by_source[].turns by_source[].correct by_source[].accuracy not_judged "
        "not_judged.turns not_judged.reasons not_judged.reasons[].reason not_judged.reasons[].turns"
    ),
    "intent_sources": "turns rows rows[].source rows[].title rows[].turns rows[].share recorded",
    "judge": (
        "turns agreed agreement audio_only_turns confusion confusion.metadata confusion.audio "
        "confusion.counts"
    ),
    "replies": (
        "formats formats[].format formats[].turns formats[].share sample_rates "
        "sample_rates[].sample_rate_hz sample_rates[].turns audio_ms audio_ms.p50 audio_ms.p90 "
        "audio_ms.p95 audio_ms.p99 audio_ms.max audio_ms.min audio_ms.mean audio_count playback_stalls "
        "playback_stalls.turns playback_stalls.stalled_turns playback_stalls.share playback_stalls.total "
        "playback_stalls.max"
    ),
    "diagnoses": "[].code [].count [].share [].known [].headline [].finding [].causes [].fixes",
    "fast": (
        "turns succeeded failed failure_rate note roundtrip roundtrip.p50 roundtrip.p90 roundtrip.p95 "
        "roundtrip.p99 roundtrip.max roundtrip.min roundtrip.mean latency latency.p50 latency.p90 "
        "latency.p95 latency.p99 latency.max latency.min latency.mean timings timings.audible_ms "
        "timings.audible_ms.title timings.audible_ms.unit timings.audible_ms.count timings.audible_ms.p50 "
        "timings.audible_ms.p90 timings.audible_ms.p95 timings.audible_ms.p99 timings.audible_ms.max "
        "timings.audible_ms.min timings.audible_ms.mean "
        "timings.client_tail_ms timings.client_tail_ms.title timings.client_tail_ms.unit timings.client_tail_ms.count timings.client_tail_ms.p50 timings.client_tail_ms.p90 timings.client_tail_ms.p95 timings.client_tail_ms.p99 timings.client_tail_ms.max timings.client_tail_ms.min timings.client_tail_ms.mean timings.gateway_response_ms timings.gateway_response_ms.title timings.gateway_response_ms.unit timings.gateway_response_ms.count timings.gateway_response_ms.p50 timings.gateway_response_ms.p90 timings.gateway_response_ms.p95 timings.gateway_response_ms.p99 timings.gateway_response_ms.max timings.gateway_response_ms.min timings.gateway_response_ms.mean timings.intent_ms timings.intent_ms.title "
        "timings.intent_ms.unit timings.intent_ms.count timings.intent_ms.p50 timings.intent_ms.p90 "
        "timings.intent_ms.p95 timings.intent_ms.p99 timings.intent_ms.max timings.intent_ms.min "
        "timings.intent_ms.mean timings.reply_ms timings.reply_ms.title timings.reply_ms.unit "
        "timings.reply_ms.count timings.reply_ms.p50 timings.reply_ms.p90 timings.reply_ms.p95 "
        "timings.reply_ms.p99 timings.reply_ms.max timings.reply_ms.min timings.reply_ms.mean "
        "timings.connect_ms timings.connect_ms.title timings.connect_ms.unit timings.connect_ms.count "
        "timings.connect_ms.p50 timings.connect_ms.p90 timings.connect_ms.p95 timings.connect_ms.p99 "
        "timings.connect_ms.max timings.connect_ms.min timings.connect_ms.mean timings.reply_audio_ms "
        "timings.reply_audio_ms.title timings.reply_audio_ms.unit timings.reply_audio_ms.count "
        "timings.reply_audio_ms.p50 timings.reply_audio_ms.p90 timings.reply_audio_ms.p95 "
        "timings.reply_audio_ms.p99 timings.reply_audio_ms.max timings.reply_audio_ms.min "
        "timings.reply_audio_ms.mean intent intent.turns intent.correct intent.accuracy intent.not_judged "
        "intent.not_judged.turns intent.not_judged.reasons intent.not_judged.reasons[].reason "
        "intent.not_judged.reasons[].turns diagnoses diagnoses[].code diagnoses[].count "
        "diagnoses[].headline diagnoses[].finding"
    ),
    "harness_errors": "count share headline finding advice examples",
    "send_lateness": (
        "turns per_turn turn_max_p50_ms turn_max_p99_ms p50_ms p99_ms max_ms late_turns late_share "
        "warn_ms bottleneck_ms status judged_by frame_level frame_level.host:1 frame_level.host:1.frames "
        "frame_level.host:1.p50_ms frame_level.host:1.p99_ms frame_level.host:1.max_ms explanation "
        "per_worker per_worker[].worker per_worker[].turns per_worker[].turn_max_p99_ms "
        "per_worker[].max_ms per_worker[].frame_p99_ms"
    ),
    "uplink_backlog": "turns status note fast_outliers fast_note",
    "resources": (
        "samples workers workers[].worker workers[].samples workers[].cpu_p50_percent "
        "workers[].cpu_max_percent workers[].rss_max_mb workers[].saturated gateway gateway.cpu_column "
        "gateway.rss_column gateway.scope gateway.counted gateway.cpu_p50_percent gateway.cpu_max_percent "
        "gateway.rss_max_mb judge judge.cpu_p50_percent judge.cpu_max_percent judge.counted "
        "saturated_percent note"
    ),
    "locust": (
        "requests_by_kind requests_by_kind.connect requests_by_kind.connect.requests "
        "requests_by_kind.connect.failures requests_by_kind.intent requests_by_kind.intent.requests "
        "requests_by_kind.intent.failures requests_by_kind.roundtrip requests_by_kind.roundtrip.requests "
        "requests_by_kind.roundtrip.failures requests_by_kind.ping requests_by_kind.ping.requests "
        "requests_by_kind.ping.failures failures failures[].kind failures[].name failures[].error "
        "failures[].occurrences failures[].diagnosis exceptions exceptions[].count exceptions[].message "
        "exceptions[].nodes"
    ),
    "verdict": "level problems warnings fast_left_out text",
}
LOCUST_ONLY_RUN_KEYS = {
    "run": (
        "prefix label target files files.stats files.history files.failures files.exceptions missing mode "
        "percentile_source turns requests failed failure_rate start end duration_s peak_users"
    ),
    "metrics": (
        "roundtrip roundtrip.title roundtrip.unit roundtrip.column roundtrip.locust_kind roundtrip.per "
        "roundtrip.definition roundtrip.source roundtrip.exact roundtrip.count roundtrip.percentiles "
        "roundtrip.percentiles.p50 roundtrip.percentiles.p90 roundtrip.percentiles.p95 "
        "roundtrip.percentiles.p99 roundtrip.percentiles.max roundtrip.percentiles.min "
        "roundtrip.percentiles.mean roundtrip.bands roundtrip.bands[].band roundtrip.bands[].meaning "
        "roundtrip.bands[].count roundtrip.bands[].share roundtrip.band roundtrip.band_basis "
        "roundtrip.note latency latency.title latency.unit latency.column latency.locust_kind latency.per "
        "latency.definition latency.source latency.exact latency.count latency.percentiles "
        "latency.percentiles.p50 latency.percentiles.p90 latency.percentiles.p95 latency.percentiles.p99 "
        "latency.percentiles.max latency.percentiles.min latency.percentiles.mean latency.bands "
        "latency.bands[].band latency.bands[].meaning latency.bands[].count latency.bands[].share "
        "latency.band latency.band_basis latency.note chunks chunks.title chunks.unit chunks.column "
        "chunks.locust_kind chunks.per chunks.definition chunks.source chunks.exact chunks.count "
        "chunks.percentiles chunks.percentiles.p50 chunks.percentiles.p90 chunks.percentiles.p95 "
        "chunks.percentiles.p99 chunks.percentiles.max chunks.percentiles.min chunks.percentiles.mean "
        "chunks.bands chunks.band chunks.band_basis chunks.note reconnections reconnections.title "
        "reconnections.unit reconnections.column reconnections.locust_kind reconnections.per "
        "reconnections.definition reconnections.source reconnections.exact reconnections.count "
        "reconnections.percentiles reconnections.percentiles.p50 reconnections.percentiles.p90 "
        "reconnections.percentiles.p95 reconnections.percentiles.p99 reconnections.percentiles.max "
        "reconnections.percentiles.min reconnections.percentiles.mean reconnections.bands "
        "reconnections.band reconnections.band_basis reconnections.note"
    ),
    "audible": (
        "count percentiles percentiles.p50 percentiles.p90 percentiles.p95 percentiles.p99 "
        "percentiles.max percentiles.min percentiles.mean lead lead.p50 lead.p90 lead.p95 lead.p99 "
        "lead.max lead.min lead.mean definition note"
    ),
    "timings": "",
    "intent": (
        "source turns correct accuracy per_utterance per_utterance[].utterance per_utterance[].expected "
        "per_utterance[].turns per_utterance[].correct per_utterance[].accuracy per_utterance[].top_wrong "
        "per_utterance[].top_wrong_count per_intent confusion confusion.expected confusion.recognised "
        "confusion.counts note"
    ),
    "intent_sources": "turns rows recorded note",
    "judge": (
        "turns agreed agreement audio_only_turns confusion confusion.metadata confusion.audio "
        "confusion.counts note"
    ),
    "replies": "",
    "diagnoses": "[].code [].count [].share [].known [].headline [].finding [].causes [].fixes",
    "fast": "turns note",
    "harness_errors": "count share headline finding advice examples",
    "send_lateness": "turns status note",
    "uplink_backlog": "turns status note fast_outliers fast_note",
    "resources": "samples workers gateway note",
    "locust": (
        "requests_by_kind requests_by_kind.connect requests_by_kind.connect.requests "
        "requests_by_kind.connect.failures requests_by_kind.intent requests_by_kind.intent.requests "
        "requests_by_kind.intent.failures requests_by_kind.roundtrip requests_by_kind.roundtrip.requests "
        "requests_by_kind.roundtrip.failures requests_by_kind.ping requests_by_kind.ping.requests "
        "requests_by_kind.ping.failures failures failures[].kind failures[].name failures[].error "
        "failures[].occurrences failures[].diagnosis exceptions exceptions[].count exceptions[].message "
        "exceptions[].nodes"
    ),
    "verdict": "level problems warnings fast_left_out text",
}
