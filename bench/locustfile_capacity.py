"""The capacity benchmark's Locust users: the harness's own VoiceUser, turns back to back.

A simulated user here is one continuous real-time voice: it streams an utterance, sends the
end marker, takes the reply and starts the next utterance at once (no think time), so N users
are N real-time streams. Everything else — connection, pacing, the per-frame lateness, the
turns file, the resource samples — is the harness's own code path (``locustfiles/voice.py``).

With ``--send-path timer`` (the per-user timer path, kept as a baseline) the pacer's
per-second lateness histograms are fed from ``ClientSession.audio_sent`` instead, so both
paths report the same statistics (``VOICE_PACER_STATS``); that costs well under 1 µs a frame.

With ``--processes P`` (Locust forks P workers) every worker has its own pacer and would
write its statistics to the same ``VOICE_PACER_STATS`` file, the last one winning. So a
``{pid}`` in that path is replaced, in each process once it has forked, by the process's
pid: each worker writes its own file and the benchmark reads them all (and says which
worker's numbers are missing).

    VOICE_PACER_STATS=/tmp/lateness-{pid}.json \\
    locust -f bench/locustfile_capacity.py --host ws://127.0.0.1:PORT --headless -u N -r R -t T \\
        --csv PREFIX --tags corpus --utterances GREETING [--processes P]
"""

from __future__ import annotations

import os

from locust import constant, events

from locustfiles import voice, voice_pacer
from voiceharness import protocol


class CapacityUser(voice.VoiceUser):
    wait_time = constant(0)


@events.init.add_listener
def _stats_file_per_process(environment, **_kwargs) -> None:
    # init fires in each process after Locust's fork; the pacer reads the variable when it quits.
    path = os.environ.get(voice_pacer.STATS_ENV, "")
    if "{pid}" in path:
        os.environ[voice_pacer.STATS_ENV] = path.replace("{pid}", str(os.getpid()))


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
