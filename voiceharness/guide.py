"""Numbers taken from the usage guide of the original WebSocket Audio Tester, in one place.

Everything here is the guide's (docs/protocol.md names it and says where this project filled
in what it left open). Other modules import these names rather than repeating the numbers.
"""

from __future__ import annotations

# Capture format: "16 kHz (optimal for STT), mono, PCM16, chunk = 1024 samples (2048 bytes, 64 ms)".
SAMPLE_RATE_HZ = 16_000
CHANNELS = 1
SAMPLE_WIDTH_BYTES = 2
CHUNK_SAMPLES = 1024
CHUNK_BYTES = CHUNK_SAMPLES * SAMPLE_WIDTH_BYTES
CHUNK_MS = CHUNK_SAMPLES * 1000 / SAMPLE_RATE_HZ

PROTOCOL_VERSION = 1

# The gateway documents /ws/audio; the original browser tester connects to /ws.
WS_PATH_GATEWAY = "/ws/audio"
WS_PATH_BROWSER_TESTER = "/ws"

# The real NLU contract's intent set.
INTENTS = ("GREETING", "ECHO", "TIME_NOW", "WEATHER_SIMPLE", "UNKNOWN")

# The guide's practical examples: utterance -> expected intent.
PRACTICAL_EXAMPLES = {
    "hello jarvis": "GREETING",
    "echo hello world": "ECHO",
    "what time is it": "TIME_NOW",
    "how is the weather": "WEATHER_SIMPLE",
}

# Server keepalive and per-session queue, from the gateway's own documentation.
SERVER_PING_INTERVAL_S = 5.0
SESSION_QUEUE_FRAMES = 50

# Reconnect backoff as the browser tester computes it: min(1000 * 2**n, 30000) ms.
BACKOFF_BASE_MS = 1000
BACKOFF_CAP_MS = 30_000

# The documented quality bands. Edges are listed once here; voiceharness.bands says which
# band owns a shared edge.
ROUNDTRIP_EDGES_MS = (100, 500, 1000)  # excellent < 100 <= good <= 500 < slow <= 1000 < bad
LATENCY_EDGES_MS = (50, 100, 200)  # excellent < 50 <= good <= 100 < average <= 200 < slow
RECONNECTION_EDGES = (0, 3, 10)  # 0 stable, 1-3 minor, 4-10 network problems, > 10 critical
CHUNKS_NORMAL_RANGE = (50, 200)  # 50-200 chunks normal for a short command
