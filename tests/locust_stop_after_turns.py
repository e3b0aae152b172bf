"""Test helper loaded next to a locustfile (``-f voice.py,tests/locust_stop_after_turns.py``;
``run_locust(..., stop_after_turns=N)`` does it): the run ends once N turns are recorded.
With ``stop_where="column=value"`` only turns whose record has that value count; with
``stop_each_user=True`` the run ends once every one of its users (``-u``) has N turns.

A test that needs a case in its run (a phrase said, a reconnection, a dozen turns to compare)
then gets it for sure, on a fast machine or a busy one; ``--run-time`` stays as a generous
guard against a run that hangs, not as the measure of how much happens. The run ends the way
``--run-time`` ends it (``runner.quit()``: users stopped, their turns in progress recorded as
``run_stopped``, the run marked complete); only turns that ended by themselves are counted.
Records are counted where they arrive (the standalone process or the master), through the
harness's public ``environment.voice.sink.add_listener``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter

import gevent
from locust import events
from locust.runners import WorkerRunner

TURNS_ENV = "VOICE_TEST_STOP_AFTER_TURNS"
WHERE_ENV = "VOICE_TEST_STOP_AFTER_TURNS_WHERE"  # "column=value": count only the rows that have it
EACH_USER_ENV = "VOICE_TEST_STOP_AFTER_TURNS_EACH_USER"  # "1": N turns for every user of the run
log = logging.getLogger("tests.stop_after_turns")


@events.init.add_listener
def _stop_after_turns(environment, **_kwargs) -> None:
    wanted = int(os.environ.get(TURNS_ENV) or 0)
    if wanted <= 0 or isinstance(environment.runner, WorkerRunner):
        return
    column, _, value = (os.environ.get(WHERE_ENV) or "").partition("=")
    users = environment.parsed_options.num_users if os.environ.get(EACH_USER_ENV) == "1" else 0
    per_user: Counter[tuple[str, str]] = Counter()  # users are numbered within their process
    ended = False

    def on_row(row) -> None:
        nonlocal ended
        if ended or row["failure"] == "run_stopped" or (column and str(row[column]) != value):
            return
        per_user[str(row["worker"]), str(row["user"])] += 1
        if users:
            ended = len(per_user) >= users and min(per_user.values()) >= wanted
        else:
            ended = per_user.total() >= wanted
        if ended:
            log.info("%d turns recorded%s: ending the run", wanted, " by every user" if users else "")
            gevent.spawn(environment.runner.quit)  # not from this greenlet: quit stops the users

    environment.voice.sink.add_listener(on_row)  # the runtime is built at init, before this hook
