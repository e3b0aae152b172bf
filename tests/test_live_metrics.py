"""voiceharness.live_metrics: turn records and resource samples become the run's Prometheus series."""

from __future__ import annotations

import math

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from voiceharness import guide
from voiceharness.live_metrics import (
    NO_INTENT,
    PING_BUCKETS_MS,
    ROUNDTRIP_BUCKETS_MS,
    STALE_AFTER_S,
    VoiceMetrics,
    outcome,
)
from voiceharness.turns import TurnRecord, record_row


def row(**fields) -> dict:
    """A turn record's row, as the turns file and the workers' messages carry it."""
    base = {"worker": "host:1", "user": 0, "dialect": "reference", "utterance_id": "greeting_hello_jarvis_en_160",
            "expected_intent": "GREETING", "intent": "GREETING", "success": True, "roundtrip_ms": 120.0,
            "audible_ms": 130.0, "intent_ms": 110.0, "reply_ms": 900.0, "ping_ms": 1.5, "transcript": "hello jarvis"}
    base.update(fields)
    return record_row(TurnRecord(**base))


def samples(metrics: VoiceMetrics) -> list:
    text = generate_latest(metrics.registry).decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(metrics: VoiceMetrics, name: str, **labels) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    return sum(s.value for s in samples(metrics) if s.name == name and labels.items() <= s.labels.items())


def test_turns_are_counted_by_outcome_as_the_analysis_counts_them():
    metrics = VoiceMetrics()
    metrics.observe_turn(row())
    metrics.observe_turn(row(success=False, failure="wrong_intent", intent="ECHO"))
    metrics.observe_turn(row(success=False, failure="run_stopped", roundtrip_ms=math.nan))
    assert value(metrics, "voiceharness_turns_total", outcome="success") == 1
    assert value(metrics, "voiceharness_turns_total", outcome="failure") == 1
    assert value(metrics, "voiceharness_turns_total", outcome="run_stopped") == 1
    assert value(metrics, "voiceharness_diagnoses_total", diagnosis="wrong_intent") == 1
    assert outcome(row(success=False, failure="")) == "failure"


def test_a_failed_turn_without_a_code_is_unclassified():
    metrics = VoiceMetrics()
    metrics.observe_turn(row(success=False, failure=""))
    assert value(metrics, "voiceharness_diagnoses_total", diagnosis="unclassified") == 1


def test_run_stopped_turns_stay_out_of_timings_diagnoses_and_intents():
    """As in the analysis: a turn cut short by the end of the run says nothing about the gateway."""
    metrics = VoiceMetrics()
    metrics.observe_turn(row(success=False, failure="run_stopped", roundtrip_ms=50.0, intent=""))
    assert value(metrics, "voiceharness_roundtrip_ms_count") == 0
    assert value(metrics, "voiceharness_intent_checked_total") == 0
    assert value(metrics, "voiceharness_diagnoses_total") == 0


def test_timings_land_in_their_buckets_and_unobserved_ones_are_left_out():
    metrics = VoiceMetrics()
    metrics.observe_turn(row(roundtrip_ms=100.0))  # on the edge: in le=100, as the guide's "good" owns 100
    metrics.observe_turn(row(roundtrip_ms=100.5))
    metrics.observe_turn(row(roundtrip_ms=math.nan, audible_ms=math.nan, success=False, failure="no_audio_tts"))
    assert value(metrics, "voiceharness_roundtrip_ms_bucket", le="100.0") == 1
    assert value(metrics, "voiceharness_roundtrip_ms_bucket", le="150.0") == 2
    assert value(metrics, "voiceharness_roundtrip_ms_count") == 2
    assert value(metrics, "voiceharness_intent_ms_count") == 3
    assert value(metrics, "voiceharness_roundtrip_ms_sum") == 200.5


def test_bucket_edges_hold_the_guides_band_edges():
    assert set(guide.ROUNDTRIP_EDGES_MS) <= set(ROUNDTRIP_BUCKETS_MS)
    assert set(guide.LATENCY_EDGES_MS) <= set(PING_BUCKETS_MS)


def test_labels_are_intent_dialect_worker_never_utterances_or_words():
    metrics = VoiceMetrics()
    metrics.observe_turn(row(dialect="smartjarvis", worker="pod-a:7"))
    metrics.observe_turn(row(expected_intent="", intent="UNKNOWN", utterance_id="free_text_1"))
    label_names = set()
    label_values = set()
    for sample in samples(metrics):
        label_names |= set(sample.labels) - {"le", "outcome", "diagnosis"}
        label_values |= set(sample.labels.values())
    assert label_names == {"intent", "dialect", "worker"}
    assert {"GREETING", NO_INTENT, "smartjarvis", "pod-a:7"} <= label_values
    assert not any("hello" in v or "greeting_" in v or "free_text" in v for v in label_values)


def test_intent_accuracy_counters_count_judged_turns_with_an_expected_intent():
    metrics = VoiceMetrics()
    metrics.observe_turn(row())
    metrics.observe_turn(row(expected_intent="TIME_NOW", intent="ECHO", success=False, failure="wrong_intent"))
    metrics.observe_turn(row(expected_intent="TIME_NOW", intent="", success=False, failure="no_intent"))
    metrics.observe_turn(row(expected_intent="", intent="UNKNOWN"))  # nothing expected: not judged on intent
    assert value(metrics, "voiceharness_intent_checked_total") == 3
    assert value(metrics, "voiceharness_intent_correct_total") == 1
    # an intent never recognised right is there at 0 (accuracy 0), not missing
    assert any(s.name == "voiceharness_intent_correct_total" and s.labels["intent"] == "TIME_NOW" and s.value == 0
               for s in samples(metrics))


def test_reconnections_add_each_users_increase_of_its_running_total():
    metrics = VoiceMetrics()
    for user, totals in ((0, (0, 1, 1, 3)), (1, (2,)), (2, (0,))):
        for total in totals:
            metrics.observe_turn(row(user=user, reconnections=total))
    metrics.observe_turn(row(user=0, reconnections=3, worker="host:2"))  # another worker's user 0
    assert value(metrics, "voiceharness_reconnections_total", worker="host:1") == 3 + 2
    assert value(metrics, "voiceharness_reconnections_total", worker="host:2") == 3


def test_a_worker_has_its_reconnection_counter_from_its_first_turn():
    metrics = VoiceMetrics()
    metrics.observe_turn(row(worker="host:9"))
    assert any(s.name == "voiceharness_reconnections_total" and s.labels["worker"] == "host:9"
               for s in samples(metrics))


def test_load_generator_samples_become_gauges_and_a_frames_counter():
    metrics = VoiceMetrics(users=lambda: 12, workers=lambda: 2)
    sample = {"worker": "host:1", "users": 5, "worker_cpu_percent": 42.5, "worker_rss_mb": 100.0,
              "send_lateness_p99_ms": 2.5, "frames_sent": 300}
    metrics.observe_sample(sample)
    metrics.observe_sample({**sample, "worker": "host:2", "send_lateness_p99_ms": "", "frames_sent": 0})
    metrics.observe_sample({**sample, "frames_sent": 200})
    assert value(metrics, "voiceharness_users") == 12
    assert value(metrics, "voiceharness_workers") == 2
    assert value(metrics, "voiceharness_loadgen_cpu_percent", worker="host:1") == 42.5
    assert value(metrics, "voiceharness_loadgen_resident_memory_bytes", worker="host:1") == 100 * 2**20
    assert value(metrics, "voiceharness_loadgen_frames_sent_total", worker="host:1") == 500
    lateness = {s.labels["worker"]: s.value for s in samples(metrics)
                if s.name == "voiceharness_loadgen_send_lateness_p99_ms"}
    assert lateness == {"host:1": 2.5}, "no frames sent in the interval: no lateness reported, not 0"


def test_a_worker_that_stopped_sampling_loses_its_gauges_but_keeps_its_counters():
    import time

    metrics = VoiceMetrics()
    metrics.observe_turn(row(worker="gone:1"))
    metrics.observe_sample({"worker": "gone:1", "users": 3, "worker_cpu_percent": 10.0, "worker_rss_mb": 50.0,
                            "send_lateness_p99_ms": 1.0, "frames_sent": 40},
                           now=time.monotonic() - STALE_AFTER_S - 1)
    metrics.observe_sample({"worker": "here:2", "users": 3, "worker_cpu_percent": 10.0, "worker_rss_mb": 50.0,
                            "send_lateness_p99_ms": 1.0, "frames_sent": 40})
    gauges = {s.labels.get("worker") for s in samples(metrics) if s.name == "voiceharness_loadgen_cpu_percent"}
    assert gauges == {"here:2"}
    assert value(metrics, "voiceharness_loadgen_frames_sent_total", worker="gone:1") == 40
    assert value(metrics, "voiceharness_turns_total", worker="gone:1") == 1


def test_rows_from_a_workers_message_count_like_rows_made_here():
    """Workers ship rows to the master in Locust's msgpack messages: the same series come out."""
    import msgpack

    here, shipped = VoiceMetrics(), VoiceMetrics()
    rows = [row(), row(roundtrip_ms=700.0, success=False, failure="wrong_intent", intent="ECHO", reconnections=2),
            row(roundtrip_ms=math.nan, success=False, failure="run_stopped")]
    for r in rows:
        here.observe_turn(r)
    for r in msgpack.unpackb(msgpack.packb(rows)):
        shipped.observe_turn(r)

    def series(metrics):
        return sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in samples(metrics)
                      if not s.name.endswith("_created"))

    assert series(here) == series(shipped)
    assert len(series(here)) > 50


def test_the_metrics_module_imports_without_locust():
    import subprocess
    import sys

    code = ("import sys, voiceharness.live_metrics; "
            "sys.exit(any(m in sys.modules for m in ('locust', 'gevent')))")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_turns_on_network_profiles_are_counted_by_profile_and_others_are_not():
    metrics = VoiceMetrics()
    metrics.observe_turn(row(network_profile="3g", roundtrip_ms=1800.0, uplink_backlog_ms=600.0))
    metrics.observe_turn(row(network_profile="3g", success=False, failure="run_stopped", roundtrip_ms=math.nan))
    metrics.observe_turn(row(network_profile="wifi", roundtrip_ms=300.0, uplink_backlog_ms=0.0))
    metrics.observe_turn(row())  # the machine's own link: no network series
    assert value(metrics, "voiceharness_network_turns_total", network="3g") == 2
    assert value(metrics, "voiceharness_network_turns_total", network="3g", outcome="run_stopped") == 1
    assert value(metrics, "voiceharness_network_roundtrip_ms_count", network="3g") == 1
    assert value(metrics, "voiceharness_network_roundtrip_ms_bucket", network="3g", le="1500.0") == 0
    assert value(metrics, "voiceharness_network_roundtrip_ms_bucket", network="3g", le="2000.0") == 1
    assert value(metrics, "voiceharness_network_uplink_backlog_ms_bucket", network="3g", le="512.0") == 0
    assert value(metrics, "voiceharness_network_uplink_backlog_ms_bucket", network="3g", le="1000.0") == 1
    assert value(metrics, "voiceharness_network_turns_total") == 3  # the unshaped turn is in turns_total only
