"""deploy/grafana/voice-harness.json, read as Grafana reads it, without Grafana.

Every panel queries Prometheus through the dashboard's datasource variable; every metric it
names is one the harness's endpoint (voiceharness_*) or the reference gateway's /metrics really
exports; the band shading is the guide's. That every query *returns data* against a real
Prometheus that scraped a real run is checked in test_locust_metrics.py.
"""

from __future__ import annotations

import json
import re
import urllib.request

import yaml
from conftest import ROOT
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from voiceharness import guide
from voiceharness.live_metrics import VoiceMetrics
from voiceharness.turns import TurnRecord, record_row

DASHBOARD_PATH = ROOT / "deploy" / "grafana" / "voice-harness.json"
DASHBOARD = json.loads(DASHBOARD_PATH.read_text())
PANELS = [panel for panel in DASHBOARD["panels"] if panel["type"] != "row"]
# Grafana's own variables, the only ones a query may use
GRAFANA_VARIABLES = {"$__rate_interval", "$__range"}
_METRIC_PREFIXES = ("voiceharness_", "voice_", "voicegw_", "gateway_", "process_")


def exprs() -> list[str]:
    return [target["expr"] for panel in PANELS for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers with a known prefix (label names in
    by/on clauses and functions have none)."""
    return {word for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if word.startswith(_METRIC_PREFIXES)}


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",),
             "summary": ("_count", "_sum", "")}


def exported_names(text: str) -> set[str]:
    """Every sample name a /metrics page's families stand for, labelled children not yet seen included."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def harness_exposition() -> set[str]:
    """Sample names the harness's endpoint exports once a turn and a sample have come in."""
    metrics = VoiceMetrics()
    metrics.observe_turn(record_row(TurnRecord(worker="w:1", expected_intent="GREETING", intent="GREETING",
                                               success=True, roundtrip_ms=100.0, audible_ms=100.0, intent_ms=90.0,
                                               reply_ms=800.0, ping_ms=1.0, connect_ms=3.0)))
    metrics.observe_turn(record_row(TurnRecord(worker="w:1", expected_intent="ECHO", failure="wrong_intent")))
    metrics.observe_call({"worker": "w:1", "outcome": "failed", "diagnosis": "wrong_intent"})
    metrics.observe_sample({"worker": "w:1", "users": 1, "worker_cpu_percent": 1.0, "worker_rss_mb": 1.0,
                            "send_lateness_p99_ms": 1.0, "frames_sent": 1})
    return exported_names(generate_latest(metrics.registry).decode())


def test_every_panel_queries_prometheus_through_the_datasource_variable():
    (variable,) = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "datasource"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    assert len(PANELS) >= 15
    for panel in PANELS:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert set(re.findall(r"\$\{?\w+\}?", target["expr"])) <= GRAFANA_VARIABLES, target["expr"]


def test_panel_ids_are_unique_and_panels_do_not_overlap():
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_harness_metric_the_dashboard_names_is_exported():
    exported = harness_exposition()
    named = {name for expr in exprs() for name in metric_names(expr) if name.startswith("voiceharness_")}
    assert named - exported == set()
    # what the issue asks the dashboard to show
    for wanted in ("voiceharness_roundtrip_ms_bucket", "voiceharness_audible_ms_bucket", "voiceharness_turns_total",
                   "voiceharness_diagnoses_total", "voiceharness_intent_correct_total",
                   "voiceharness_reconnections_total", "voiceharness_users",
                   "voiceharness_loadgen_send_lateness_p99_ms", "voiceharness_loadgen_cpu_percent",
                   "voiceharness_calls_total", "voiceharness_calls_active", "voiceharness_call_failures_total"):
        assert wanted in named, wanted


def test_every_gateway_metric_the_dashboard_names_is_in_the_gateways_metrics(gateway_factory):
    gateway = gateway_factory("--fast-sink")
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/metrics", timeout=5) as response:
        text = response.read().decode()
    exported = exported_names(text)
    named = {name for expr in exprs() for name in metric_names(expr) if not name.startswith("voiceharness_")}
    assert {"voice_roundtrip_ms_bucket", "gateway_process_tree_cpu_seconds_total", "process_cpu_seconds_total",
            "voicegw_sessions_active"} <= named
    assert named - exported == set()


def test_roundtrip_and_latency_panels_shade_the_guides_bands():
    def edges(panel) -> list[float]:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        return [round(step["value"]) for step in steps if step["value"] is not None]

    shaded = [p for p in PANELS if p["fieldConfig"]["defaults"].get("custom", {}).get("thresholdsStyle", {})
              .get("mode") == "line+area"]
    roundtrip = [p for p in shaded if any("roundtrip_ms" in t["expr"] or "audible_ms" in t["expr"]
                                          for t in p["targets"])]
    latency = [p for p in shaded if any("ping_ms" in t["expr"] for t in p["targets"])]
    assert len(roundtrip) >= 3 and latency
    for panel in roundtrip:
        assert edges(panel) == list(guide.ROUNDTRIP_EDGES_MS), panel["title"]
    for panel in latency:
        assert edges(panel) == list(guide.LATENCY_EDGES_MS), panel["title"]


def test_provisioning_loads_the_dashboard_from_where_compose_mounts_it():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {host: container for host, container, *_ in (str(v).split(":") for v in grafana["volumes"])}
    dashboard_in_container = mounts["./deploy/grafana/voice-harness.json"]
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/voice.yml").read_text())
    (folder,) = [p["options"]["path"] for p in provider["providers"]]
    assert dashboard_in_container.rsplit("/", 1)[0] == folder
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == dashboard_in_container
    datasources = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
