"""voiceharness.locust.collector: no automatic collection while users run, cycles still reclaimed.

The module runs in a process of its own (tests/gevent_process.py): a collector switches automatic
collection off and freezes the heap, which must not leak into the rest of the test session.
"""

from __future__ import annotations

import gc
import weakref

import gevent
import pytest

from voiceharness.locust.collector import Collector

pytestmark = pytest.mark.gevent


class Node:
    pass


def cycles(n: int) -> list[weakref.ref]:
    """n unreachable reference cycles, and a weak reference to each, to see them freed."""
    refs = []
    for _ in range(n):
        a, b = Node(), Node()
        a.other, b.other = b, a
        refs.append(weakref.ref(a))
    return refs


def alive(refs: list[weakref.ref]) -> int:
    return sum(ref() is not None for ref in refs)


def test_holding_stops_automatic_collection_and_freezes_what_is_alive():
    collector = Collector(every_s=3600)
    keep = [Node() for _ in range(1000)]
    collector.hold()
    try:
        assert gc.isenabled() is False
        assert gc.get_freeze_count() >= len(keep)
        refs = cycles(5000)  # far past the young generation's threshold of 700
        gevent.sleep(0.05)
        assert alive(refs) == 5000  # no automatic pass ran while held: every cycle is still there
    finally:
        collector.close()
    assert (gc.isenabled(), gc.get_freeze_count()) == (True, 0)
    gc.collect()
    assert alive(refs) == 0


def test_holding_frees_the_cycles_already_dead_instead_of_freezing_them():
    # A ramp leaves cycles behind (each connection's handshake objects): frozen, they would stay
    # until the run stops, since the periodic passes never look at frozen objects.
    gc.disable()  # so that no automatic pass frees them before hold()
    collector = Collector(every_s=3600)
    try:
        refs = cycles(3000)
        assert alive(refs) == 3000
        collector.hold()
        assert alive(refs) == 0
        assert collector.pauses.collected >= 6000  # two Nodes per cycle, freed by hold()'s own pass
    finally:
        collector.close()
        gc.enable()


def test_the_periodic_collection_reclaims_cycles_and_is_timed():
    collector = Collector(every_s=0.05)
    collector.hold()
    try:
        refs = cycles(2000)
        before = collector.pauses.count
        # until two periodic passes ran (a starved process runs its timers late, never fewer)
        for _ in range(600):
            if collector.pauses.count - before >= 2:
                break
            gevent.sleep(0.05)
        assert gc.isenabled() is False
        assert alive(refs) == 0
        assert collector.pauses.count - before >= 2
        assert collector.pauses.collected >= 4000  # two Nodes per cycle
        assert collector.pauses.max_ms > 0
    finally:
        collector.close()


def test_the_cpython_schedule_leaves_the_collector_alone_but_still_times_it():
    collector = Collector(every_s=3600, cpython_schedule=True)
    collector.hold()
    try:
        refs = cycles(5000)  # CPython's young passes find these on their own
        assert gc.isenabled() is True and gc.get_freeze_count() == 0
        assert alive(refs) < 5000
        assert collector.pauses.count >= 1
    finally:
        collector.close()


def test_a_closed_collector_times_no_more_pauses():
    collector = Collector(every_s=3600)
    collector.close()
    count = collector.pauses.count
    gc.collect()
    assert collector.pauses.count == count
