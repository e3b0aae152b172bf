"""The capacity benchmark's Locust users: the harness's own users, turns back to back.

A simulated user here is one continuous real-time voice: it streams an utterance, sends the
end marker, takes the reply and starts the next utterance at once (no think time), so N users
are N real-time streams. Everything else — connection, pacing, the per-frame lateness, the
turns file, the resource samples — is the harness's own code path
(:class:`voiceharness.locust.scenarios.CorpusUser`).

With ``--processes P`` (Locust forks P workers) every worker has its own pacer and would
write its statistics to the same ``VOICE_PACER_STATS`` file, the last one winning. So a
``{pid}`` in that path is replaced, in each process once it has forked, by the process's
pid: each worker writes its own file and the benchmark reads them all (and says which
worker's numbers are missing).

    VOICE_PACER_STATS=/tmp/lateness-{pid}.json \\
    locust -f bench/locustfile_capacity.py --host ws://127.0.0.1:PORT --headless -u N -r R -t T \\
        --csv PREFIX --utterances GREETING [--processes P]
"""

from __future__ import annotations

import os

from locust import constant, events

from voiceharness.locust import scenarios, transport


class CapacityUser(scenarios.CorpusUser):
    wait_time = constant(0)


@events.init.add_listener
def _stats_file_per_process(environment, **_kwargs) -> None:
    # init fires in each process after Locust's fork; the pacer reads the variable when it quits.
    path = os.environ.get(transport.STATS_ENV, "")
    if "{pid}" in path:
        os.environ[transport.STATS_ENV] = path.replace("{pid}", str(os.getpid()))
