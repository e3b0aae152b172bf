"""Locust's own ``--csv`` files end with the run's final numbers, and without a traceback.

Locust (2.46.3 and later, up to at least 2.47.0) closes its CSV files at shutdown while the
greenlet that rewrites them every ``CSV_STATS_INTERVAL_SEC`` still runs: upstream pull request
https://github.com/locustio/locust/pull/3486 added ``stats_csv_writer.close_files()`` to
``main.shutdown()`` but left ``StatsCSVFileWriter.stats_writer`` alive. When anything lets
gevent's hub run after that, and the writer is due, it writes to a closed file and Locust prints
``ValueError: I/O operation on closed file`` twice (gevent's report and Locust's
"Unhandled exception in greenlet"). With ``--processes`` it happens at every exit the writer is
due for: the master's ``atexit`` handler that reaps its children sleeps 0.1 s cooperatively. The
cause is Locust's, not the harness's; it is fixed here without patching Locust or reaching into
its objects.

The guard uses Locust's ``quit`` event, the last thing Locust does before it closes the files:
it waits (cooperatively, so the writer can run) until the writer has rewritten ``PREFIX_stats.csv``
once more. The writer then sleeps a whole interval (1 s) — ten times what Locust's exit still takes —
and the files hold the numbers of the finished run: the pass before could predate the workers'
last reports, so ``_stats.csv`` disagreed with the summary Locust printed.
"""

from __future__ import annotations

import logging
import os
import time

import gevent
from locust import stats as locust_stats

log = logging.getLogger("voice.locust_csv")

POLL_S = 0.01


def install(hooks, stats_path: str) -> None:
    """Add the guard to ``hooks.quit`` (Locust's events) of the process that writes ``--csv``
    (a standalone run or the master; Locust's workers write none): ``stats_path`` is its
    ``PREFIX_stats.csv``."""

    def on_quit(**_kwargs) -> None:
        wait_for_a_fresh_write(stats_path, 2 * locust_stats.CSV_STATS_INTERVAL_SEC + 1)

    hooks.quit.add_listener(on_quit)


def wait_for_a_fresh_write(path: str, timeout_s: float) -> bool:
    """Yield to gevent until ``path`` is written again (its modification time changes); False
    when it was not within ``timeout_s`` (the writer is gone: nothing is left to guard against)."""
    before = _modified_ns(path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        gevent.sleep(POLL_S)
        if _modified_ns(path) != before:
            return True
    log.debug("Locust's CSV writer did not rewrite %s within %.1f s", path, timeout_s)
    return False


def _modified_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1
