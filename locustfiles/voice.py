"""The harness's locustfile: the usage guide's scenarios and the whole corpus, as Locust users.

Run it with the web UI::

    locust -f locustfiles/voice.py --host ws://127.0.0.1:7090

or headless, all scenarios or some of them by class name (or ``--tags basic ...``)::

    locust -f locustfiles/voice.py --host ws://127.0.0.1:7090 --headless -u 50 -r 10 -t 60s --csv results/run
    locust -f locustfiles/voice.py --host ws://127.0.0.1:7090 --headless -u 5 -t 30s BasicUser

The users are in :mod:`voiceharness.locust.scenarios`; write your own scenario on the same API
(``examples/dialogue.py`` and the README's "Write your own scenario"). The harness's options
are listed by ``python -m voiceharness.locust.options``.
"""

from voiceharness.locust.scenarios import BasicUser, CorpusUser, PerformanceUser, RecoveryUser, StabilityUser

__all__ = ["BasicUser", "CorpusUser", "PerformanceUser", "RecoveryUser", "StabilityUser"]
