"""voiceharness.locust.collector: no automatic collection while users run, cycles still reclaimed.

Each check runs in a child interpreter: it switches the collector off and freezes the heap,
which must not leak into the rest of the test session.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(body: str) -> dict:
    code = textwrap.dedent('''
        import gc, json, weakref
        import gevent
        from voiceharness.locust.collector import Collector

        class Node:
            pass

        def cycles(n):
            """n unreachable reference cycles, and a weak reference to each, to see them freed."""
            refs = []
            for _ in range(n):
                a, b = Node(), Node()
                a.other, b.other = b, a
                refs.append(weakref.ref(a))
            return refs

        def alive(refs):
            return sum(ref() is not None for ref in refs)
    ''') + textwrap.dedent(body)
    completed = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_holding_stops_automatic_collection_and_freezes_what_is_alive():
    result = _run('''
        collector = Collector(every_s=3600)
        keep = [Node() for _ in range(1000)]
        collector.hold()
        held = {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}
        refs = cycles(5000)  # far past the young generation's threshold of 700
        gevent.sleep(0.05)
        held["alive_after_churn"] = alive(refs)
        collector.release()
        released = {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}
        gc.collect()
        print(json.dumps({"held": held, "released": released, "alive_after_release": alive(refs)}))
    ''')
    assert result["held"]["enabled"] is False
    assert result["held"]["frozen"] >= 1000
    # No automatic pass ran while held: every cycle is still there.
    assert result["held"]["alive_after_churn"] == 5000
    assert result["released"] == {"enabled": True, "frozen": 0}
    assert result["alive_after_release"] == 0


def test_the_periodic_collection_reclaims_cycles_and_is_timed():
    result = _run('''
        collector = Collector(every_s=0.05)
        collector.hold()
        refs = cycles(2000)
        before = collector.pauses.count
        gevent.sleep(0.3)
        out = {"alive": alive(refs), "pauses": collector.pauses.count - before,
               "collected": collector.pauses.collected, "max_ms": collector.pauses.max_ms,
               "enabled_while_held": gc.isenabled()}
        collector.release()
        print(json.dumps(out))
    ''')
    assert result["alive"] == 0
    assert result["pauses"] >= 2
    assert result["collected"] >= 4000  # two Nodes per cycle
    assert result["max_ms"] > 0
    assert result["enabled_while_held"] is False


def test_the_cpython_schedule_leaves_the_collector_alone_but_still_times_it():
    result = _run('''
        collector = Collector(every_s=3600, cpython_schedule=True)
        collector.hold()
        refs = cycles(5000)  # CPython's young passes find these on their own
        out = {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count(), "alive": alive(refs),
               "pauses": collector.pauses.count}
        collector.release()
        print(json.dumps(out))
    ''')
    assert result["enabled"] is True and result["frozen"] == 0
    assert result["alive"] < 5000
    assert result["pauses"] >= 1
