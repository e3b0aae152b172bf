"""Loaded next to a locustfile by ``python -m bench.soak_harness --tracemalloc``: where memory grows.

With ``PYTHONTRACEMALLOC=1`` set for the process, it takes a tracemalloc snapshot once the run
has settled (``VOICE_SOAK_SETTLE_S`` after the test starts) and another when Locust quits, and
writes the 25 source lines whose live memory grew most in between to ``VOICE_SOAK_TOP`` (JSON).
"""

from __future__ import annotations

import json
import os
import tracemalloc

import gevent
from locust import events

TOP_LINES = 25
_snapshots: dict[str, tracemalloc.Snapshot] = {}


def _take(name: str) -> None:
    if tracemalloc.is_tracing():
        _snapshots[name] = tracemalloc.take_snapshot().filter_traces(
            (tracemalloc.Filter(False, tracemalloc.__file__),))


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    gevent.spawn_later(float(os.environ.get("VOICE_SOAK_SETTLE_S") or 300), _take, "settled")


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:
    path = os.environ.get("VOICE_SOAK_TOP")
    if not path or "settled" not in _snapshots:
        return
    _take("end")
    differences = _snapshots["end"].compare_to(_snapshots["settled"], "lineno")
    top = [{"where": str(stat.traceback[0]), "size_diff_kb": round(stat.size_diff / 1024, 1),
            "count_diff": stat.count_diff, "size_kb": round(stat.size / 1024, 1)}
           for stat in differences[:TOP_LINES]]
    with open(path, "w", encoding="utf-8") as file:
        json.dump(top, file, indent=2)
