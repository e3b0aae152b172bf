"""Tests of the Locust layer run in a process of their own that gevent patched first.

Importing Locust patches the whole process with gevent (sockets, threads, time.sleep become
cooperative). A Locust process does that before anything else; a pytest process that did it
half-way through a run would break the tests that follow it (a lock or thread made before the
patching, used after). So a test module marked ``pytestmark = pytest.mark.gevent`` runs in a
fresh interpreter — ``python -m pytest -p gevent_process_child MODULE::TEST ...`` with gevent
patched when the plugin loads, before any test module is imported — and its tests are ordinary
test code: they build a Locust ``Environment`` in their own process, as Locust's own tests do.

The parent runs one child per module, for that module's selected gevent tests, the first time
one of them is due, and reports each test with the child's outcome, duration and output; the
child writes them as JSON lines (:mod:`gevent_process_child`). Fixtures run in the child only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from _pytest.reports import TestReport

CHILD_ENV = "VOICEHARNESS_GEVENT_CHILD"  # set in the child: it runs its tests itself
ROOT = Path(__file__).resolve().parent.parent
# A module's gevent tests must end within this (the slowest runs Locust against a gateway for a minute).
CHILD_TIMEOUT_S = 900

_results: dict[str, dict] = {}  # node id -> {"setup"|"call"|"teardown": report fields}


def in_gevent_child() -> bool:
    return bool(os.environ.get(CHILD_ENV))


def _module_items(item: pytest.Item) -> list[pytest.Item]:
    return [other for other in item.session.items
            if other.path == item.path and other.get_closest_marker("gevent") is not None]


def _run_child(item: pytest.Item) -> None:
    """Run the gevent tests of ``item``'s module in a fresh interpreter; keep their reports."""
    items = _module_items(item)
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", prefix="gevent-results-") as results:
        # The plugin is a module of tests/, which pytest puts on sys.path only once it has loaded conftest.
        path = os.pathsep.join(p for p in (str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, CHILD_ENV: results.name, "PYTHONPATH": path}
        command = [sys.executable, "-m", "pytest", "-p", "gevent_process_child", "-p", "no:cacheprovider",
                   "-p", "no:xdist", "-q", "--no-header", "-o", "addopts=", "--rootdir", str(ROOT),
                   *[other.nodeid for other in items]]
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=CHILD_TIMEOUT_S, check=False)
            output = done.stdout + done.stderr
        except subprocess.TimeoutExpired as expired:
            output = f"the child pytest took over {CHILD_TIMEOUT_S} s and was killed\n{expired.stdout or ''}"
        for line in results:
            report = json.loads(line)
            _results.setdefault(report["nodeid"], {})[report["when"]] = report
    for other in items:
        # A test the child never reported (it crashed, or timed out): fail it with the child's output.
        _results.setdefault(other.nodeid, {}).setdefault(
            "call", {"outcome": "failed", "longrepr": f"no result from the gevent child process:\n{output[-6000:]}",
                     "duration": 0.0, "sections": []})


def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Report a gevent test from its child's results (running the child first if needed)."""
    if in_gevent_child() or item.get_closest_marker("gevent") is None:
        return None
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    if item.nodeid not in _results:
        _run_child(item)
    reports = _results.pop(item.nodeid)
    for when in ("setup", "call", "teardown"):
        fields = reports.get(when)
        if fields is None:
            continue
        longrepr = fields["longrepr"]
        if fields["outcome"] == "skipped" and isinstance(longrepr, list):
            longrepr = tuple(longrepr)  # (path, line, reason), as pytest shows a skip
        report = TestReport(item.nodeid, item.location, {k: 1 for k in item.keywords}, fields["outcome"],
                            longrepr, when, sections=[tuple(s) for s in fields["sections"]],
                            duration=fields["duration"])
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
