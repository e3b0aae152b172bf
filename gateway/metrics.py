"""The gateway's Prometheus metrics, served as text at ``GET /metrics``.

Each :class:`GatewayMetrics` owns its registry, so several gateways can live in one
process (the tests start many) without clashing in prometheus_client's global registry.
Times are histograms in seconds, as Prometheus names them (``*_seconds``).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

STAGES = ("recognize", "nlu", "synth", "total")
_STAGE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LAG_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # CPU and memory of the gateway process: the guide's performance scenario watches them.
        ProcessCollector(registry=r)
        self.sessions_active = Gauge("voicegw_sessions_active", "Open WebSocket sessions", registry=r)
        self.sessions_total = Counter("voicegw_sessions", "WebSocket sessions accepted", registry=r)
        self.upgrades_refused = Counter(
            "voicegw_upgrades_refused", "WebSocket upgrades refused, by HTTP status", ["status"], registry=r
        )
        self.protocol_errors = Counter(
            "voicegw_protocol_errors",
            "Sessions closed for a protocol error, by close code",
            ["code"],
            registry=r,
        )
        self.frames_received = Counter("voicegw_audio_frames_received", "PCM16 frames received", registry=r)
        self.queue_drops = Counter(
            "voicegw_queue_dropped_frames",
            "Audio frames dropped from a full session queue (oldest first)",
            registry=r,
        )
        self.utterances = Counter(
            "voicegw_utterances",
            "Utterances ended, by reason (silence, marker, max_length)",
            ["reason"],
            registry=r,
        )
        self.turns = Counter("voicegw_turns", "Replies sent, by intent", ["intent"], registry=r)
        self.turn_errors = Counter("voicegw_turn_errors", "Turns whose pipeline call failed", registry=r)
        self.stage_seconds = Histogram(
            "voicegw_stage_seconds",
            "Time per turn stage: recognize, nlu, synth (pipeline) and total (end of utterance to reply sent)",
            ["stage"],
            buckets=_STAGE_BUCKETS_S,
            registry=r,
        )
        self.loop_lag_seconds = Histogram(
            "voicegw_event_loop_lag_seconds",
            "How late the event loop woke a periodic timer",
            buckets=_LAG_BUCKETS_S,
            registry=r,
        )
        self.loop_lag_max_seconds = Gauge(
            "voicegw_event_loop_lag_max_seconds",
            "Largest event-loop lag since the gateway started",
            registry=r,
        )
        self.ready = Gauge("voicegw_ready", "1 when /readyz answers 200", registry=r)
        for stage in STAGES:  # so every stage shows in /metrics before the first turn
            self.stage_seconds.labels(stage)

    def observe_stage_ms(self, stage: str, milliseconds: float) -> None:
        self.stage_seconds.labels(stage).observe(max(0.0, milliseconds) / 1000.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
