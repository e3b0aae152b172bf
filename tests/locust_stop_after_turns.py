"""Test helper loaded next to a locustfile (``-f voice.py,tests/locust_stop_after_turns.py``;
``run_locust(..., stop_after_turns=N)`` does it): the run ends once N turns are recorded.

A test that needs a case in its run (a phrase said, a reconnection, a dozen turns to compare)
then gets it for sure, on a fast machine or a busy one; ``--run-time`` stays as a generous
guard against a run that hangs, not as the measure of how much happens. The run ends the way
``--run-time`` ends it (``runner.quit()``: users stopped, their turns in progress recorded as
``run_stopped``, the run marked complete); only turns that ended by themselves are counted.
Records are counted where they arrive (the standalone process or the master), through the
harness's public ``TurnSink.add_listener``.
"""

from __future__ import annotations

import logging
import os

import gevent
from locust import events
from locust.runners import WorkerRunner

from voiceharness.locust.records import TurnSink

ENV = "VOICE_TEST_STOP_AFTER_TURNS"
log = logging.getLogger("tests.stop_after_turns")


@events.init.add_listener
def _stop_after_turns(environment, **_kwargs) -> None:
    wanted = int(os.environ.get(ENV) or 0)
    if wanted <= 0 or isinstance(environment.runner, WorkerRunner):
        return
    counted = 0

    def on_row(row) -> None:
        nonlocal counted
        if row["failure"] == "run_stopped":
            return
        counted += 1
        if counted == wanted:
            log.info("%d turns recorded: ending the run", wanted)
            gevent.spawn(environment.runner.quit)  # not from this greenlet: quit stops the users

    TurnSink.add_listener(on_row)
