"""The child side of :mod:`gevent_process`: a pytest plugin, loaded with ``-p``, that patches
the process with gevent as soon as pytest loads it — before any test module, Locust included,
is imported, as a Locust process patches itself first — and writes each test's report as a JSON
line for the parent to show."""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # after the patching, on purpose
import os

from gevent_process import CHILD_ENV


def pytest_runtest_logreport(report) -> None:
    longrepr = report.longrepr
    if longrepr is not None and not isinstance(longrepr, str):
        if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
            longrepr = list(longrepr)
        else:
            longrepr = str(longrepr)
    line = {"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome, "longrepr": longrepr,
            "duration": report.duration, "sections": [list(section) for section in report.sections]}
    with open(os.environ[CHILD_ENV], "a", encoding="utf-8") as file:
        file.write(json.dumps(line) + "\n")
