"""The capacity benchmark's Locust users: the harness's own users, turns back to back.

A simulated user here is one continuous real-time voice: it streams an utterance, sends the
end marker, takes the reply and starts the next utterance at once (no think time), so N users
are N real-time streams. Everything else — connection, pacing, the per-frame lateness, the
turns file, the resource samples — is the harness's own code path
(:class:`voiceharness.locust.scenarios.CorpusUser`).

    locust -f bench/locustfile_capacity.py --host ws://127.0.0.1:PORT --headless -u N -r R -t T \\
        --csv PREFIX --utterances GREETING
"""

from __future__ import annotations

from locust import constant

from voiceharness.locust import scenarios


class CapacityUser(scenarios.CorpusUser):
    wait_time = constant(0)
