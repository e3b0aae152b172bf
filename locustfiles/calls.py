"""Calls that arrive on their own clock (the open model): ``CallerUser`` alone.

Calls start as a Poisson process at ``--call-rate``, each a dialogue of ``--call-turns`` turns of
the corpus that then hangs up; the users (``-u``) are arrival streams sharing the rate, so spawn
them all at once (``-r`` = ``-u``)::

    locust -f locustfiles/calls.py --host ws://127.0.0.1:7090 --headless -u 4 -r 4 -t 120s \\
        --call-rate 2/s --call-turns 2-4 --csv results/calls
    locust -f locustfiles/calls.py --host ws://127.0.0.1:7090 --headless -u 4 -r 4 -t 600s \\
        --call-rate 1/s:10/s:1/s:60s --csv results/knee          # a stepped run: the knee

Then ``python -m analysis results/calls``: calls offered, started, completed, failed by
diagnosis, setup time, concurrent calls over time and, for a stepped run, the knee.
docs/open-model.md explains the model; :mod:`voiceharness.locust.calls` the user.
"""

from voiceharness.locust.calls import CallerUser

__all__ = ["CallerUser"]
