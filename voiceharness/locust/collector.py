"""When Python's cyclic garbage collector may pause a load-generator process.

A collection stops every greenlet of the process, so each frame due during it goes out late
by the pause. Measured at 2,000 real-time streams in one process (``bench/sink.py`` as the
gateway, CPython's default thresholds, ``gc.callbacks``): in 30 s the collector made 600
young passes (3-15 ms each once the run was steady) and 54 middle ones (21-25 ms), and
collected **nothing** in all of them — a turn's objects (its record, its ``AsyncResult``s,
the pacer's stream) are freed by reference counting the moment the turn ends. The young
generation was simply full of live turns: ~25 objects per user, 2,000 users. Those pauses
alone set the p99 send lateness above 5 ms.

So while users run, the collector runs when the harness says, not on allocation churn:

* once the users are spawned (``spawning_complete``), after one full collection of what the
  ramp left in cycles, everything alive — Locust, the corpus
  and its pre-framed audio, the users, their connections and greenlets — is frozen out of
  the collector (``gc.freeze``) and automatic collection is switched off;
* every :data:`COLLECT_EVERY_S` one full collection reclaims what cycles there are (a
  reconnection or a stopped user leaves some: greenlets and connections refer to each
  other). It walks only what was not frozen — the turns alive at that moment — so it costs
  about one of the old middle passes, once per interval instead of every 4 s;
* when the run stops (``test_stop``) everything is unfrozen and automatic collection is back
  on, so a web-UI session that runs test after test does not keep each run's users.

One collector per Locust environment, the runtime's (``environment.voice.collector``). Every
pause is timed (``gc.callbacks``): :attr:`Collector.pauses` has their count, total and
longest, which the pacer writes with its lateness statistics. ``VOICE_COLLECTOR=cpython`` in
the environment leaves CPython's own schedule in place (pauses still timed): the capacity
benchmark's baseline for this module, and a way out should a run's memory ever grow.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import asdict, dataclass

import gevent

# Seconds between the harness's own full collections while users run.
COLLECT_EVERY_S = 30.0
SCHEDULE_ENV = "VOICE_COLLECTOR"  # "cpython": keep CPython's schedule


@dataclass
class CollectorPauses:
    """Collections run in this process: how many, their total and longest pause (ms), what they freed."""

    count: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    collected: int = 0  # unreachable objects found (cyclic garbage)

    def to_json(self) -> dict[str, float]:
        return asdict(self)


class Collector:
    """Holds automatic collection off while users run; collects every ``every_s`` seconds instead."""

    def __init__(self, every_s: float = COLLECT_EVERY_S, *, cpython_schedule: bool | None = None) -> None:
        self.every_s = every_s
        self.cpython_schedule = (os.environ.get(SCHEDULE_ENV, "") == "cpython"
                                 if cpython_schedule is None else cpython_schedule)
        self.pauses = CollectorPauses()
        self.holding = False
        self._started_at = 0.0
        self._greenlet: gevent.Greenlet | None = None
        gc.callbacks.append(self._timed)

    def close(self) -> None:
        """Stop timing this process's collections (the run is over)."""
        self.release()
        if self._timed in gc.callbacks:
            gc.callbacks.remove(self._timed)

    def _timed(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started_at = time.perf_counter()
            return
        pause_ms = (time.perf_counter() - self._started_at) * 1000.0
        pauses = self.pauses
        pauses.count += 1
        pauses.total_ms += pause_ms
        pauses.max_ms = max(pauses.max_ms, pause_ms)
        pauses.collected += info.get("collected", 0)

    def hold(self) -> None:
        """Freeze what is alive now, stop automatic collection, collect every ``every_s`` from now on."""
        if self.cpython_schedule:
            return
        # Garbage first: what the ramp left in cycles (a connection's handshake objects: websockets'
        # protocol and its parser generator refer to each other) would otherwise be frozen with the
        # living, out of reach of the periodic passes, until the run stops.
        gc.collect()
        gc.freeze()
        gc.disable()
        self.holding = True
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._collect_periodically)

    def release(self) -> None:
        """Back to CPython's own schedule, with everything frozen so far collectable again."""
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        if self.holding:
            self.holding = False
            gc.unfreeze()
            gc.enable()

    def _collect_periodically(self) -> None:
        while True:
            gevent.sleep(self.every_s)
            gc.collect()

