"""The capacity benchmark's Locust users: the harness's own VoiceUser, turns back to back.

A simulated user here is one continuous real-time voice: it streams an utterance, sends the
end marker, takes the reply and starts the next utterance at once (no think time), so N users
are N real-time streams. Everything else — connection, pacing, the per-frame lateness, the
turns file, the resource samples — is the harness's own code path (``locustfiles/voice.py``).

With ``--send-path timer`` (the per-user timer path, kept as a baseline) the pacer's
per-second lateness histograms are fed from ``ClientSession.audio_sent`` instead, so both
paths report the same statistics (``VOICE_PACER_STATS``); that costs well under 1 µs a frame.

    locust -f bench/locustfile_capacity.py --host ws://127.0.0.1:PORT --headless -u N -r R -t T \\
        --csv PREFIX --tags corpus --utterances GREETING
"""

from __future__ import annotations

from locust import constant, events

from locustfiles import voice, voice_pacer
from voiceharness import protocol


class CapacityUser(voice.VoiceUser):
    wait_time = constant(0)


@events.init.add_listener
def _count_timer_path_lateness(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None or getattr(options, "send_path", "pacer") != "timer":
        return
    audio_sent = protocol.ClientSession.audio_sent
    add = voice_pacer.PACER.stats.add

    def counted(self, now: float, due: float | None = None) -> None:
        audio_sent(self, now, due)
        if due is not None:
            add(now, now - due)

    protocol.ClientSession.audio_sent = counted  # benchmark-only instrumentation of the old path
