"""Calls that arrive on their own clock: :class:`CallerUser` and the run's :class:`CallBook`.

``locust -f locustfiles/calls.py --call-rate 2/s --call-turns 2-4 -u 4 -r 4 ...``: calls start as
a Poisson process at 2 a second, each a dialogue of 2-4 turns on a connection of its own, then
hang up; how many are in progress at once is what the gateway's speed makes it. A stepped ramp
(``--call-rate 1/s:10/s:1/s:60s``) finds the rate at which the roundtrip leaves the "good" band
(the analysis's knee, ``python -m analysis PREFIX``). The pure parts (the schedule, the Poisson
arrivals, the call record) are :mod:`voiceharness.calls`.

**Arrival streams.** Each :class:`CallerUser` is one arrival stream at ``rate / U``, where ``U`` is
the number of caller users of the run; Poisson processes superpose, so the ``U`` streams make one
Poisson process at the rate, on one process or spread over Locust's workers, without any message
between them. ``U`` is the run's user count (``-u``, or the web UI form's), which a worker does not
get from Locust (its spawn messages carry only its own share): the master (or the standalone
process) writes it into the parsed options as ``call_user_count`` at ``test_start``, and Locust's
spawn messages carry custom options to every worker. ``--call-streams N`` says ``U`` outright (a
locustfile that mixes callers with other users, or Locust run as a library).
So run caller users alone, or give ``--call-streams``; spawn them all at once (``-r`` = ``-u``):
a stream starts offering calls when its user starts.

**On the schedule's clock.** A stream draws its next arrival from the previous one's *scheduled*
time, never from when a call ended; its Locust task only starts the call (in a greenlet of its
own, with a :class:`~voiceharness.locust.client.VoiceClient` of its own) and returns, and its
``wait_time`` is the time left to the next arrival. A call the harness cannot start on time
(more than ``--call-start-tolerance-ms`` late: the load generator was busy) or may not start
(``--max-concurrent-calls`` in progress in this process) is not started and is recorded as
``not_started_on_time`` or ``harness_limit``: the harness's own limits, never the gateway's failure.

**Records.** Every offered call ends in one row of ``PREFIX_calls.csv`` (columns:
:data:`voiceharness.calls.COLUMNS`); its turns carry its ``call_id`` and the offered rate in the
turns file. A worker ships its call rows and its calls in progress to the master
(``voice_calls`` messages), as it does turn records. A started call also fires one Locust
``request`` event, type ``call``, named by its outcome (``completed``, ``failed``,
``run_stopped``), with the call's duration; a failed call's message is its diagnosis.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import gevent
from gevent.pool import Group
from locust import task
from locust.exception import RescheduleTask, RPCError, RPCSendError, StopUser
from locust.runners import MasterRunner, WorkerRunner

from voiceharness import calls as calls_module
from voiceharness import diagnoses
from voiceharness.calls import CallRecord, CallWriter
from voiceharness.locust.client import VoiceClient, VoiceFailure
from voiceharness.locust.user import VoiceUser

log = logging.getLogger("voice.calls")

MESSAGE_TYPE = "voice_calls"
FLUSH_INTERVAL_S = 0.5  # a worker ships its call rows and its calls in progress this often


class CallBook:
    """The calls of one Locust environment (``environment.voice.calls``): the schedule's clock,
    the calls in progress, and where call records go (the calls file, the master, the Voice tab)."""

    def __init__(self, environment, calls_file: str, worker_name: str) -> None:
        self.environment = environment
        self.calls_file = calls_file
        self.worker_name = worker_name
        self.is_worker = isinstance(environment.runner, WorkerRunner)
        self.writer: CallWriter | None = None
        self.stream_numbers = itertools.count()
        self.started_monotonic: float | None = None  # the schedule's clock: 0 s at this process's test start
        self.started_wall: float = 0.0
        self.active = 0  # calls in progress in this process
        self.pending: list[dict[str, Any]] = []  # a worker's rows not yet shipped
        self.outcomes: Counter[str] = Counter()  # every call record this process owns, by outcome
        self.diagnoses: Counter[str] = Counter()  # failed calls by diagnosis
        self.active_by_worker: dict[str, int] = {}  # the master's view of its workers' calls in progress
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._shipper: gevent.Greenlet | None = None
        self._shipped_active = 0  # the calls in progress the master was last told of

    # -- the clock
    def clock_s(self) -> float:
        """Seconds on the schedule's clock (since this process's test start)."""
        if self.started_monotonic is None:
            self.start_clock()
        return time.monotonic() - self.started_monotonic

    def start_clock(self) -> None:
        self.started_monotonic = time.monotonic()
        self.started_wall = time.time()

    def wall_time(self, clock_s: float) -> float:
        return self.started_wall + clock_s

    # -- install
    def install(self, hooks, runner) -> None:
        if isinstance(runner, MasterRunner):
            runner.register_message(MESSAGE_TYPE, self._on_message)
        hooks.test_start.add_listener(self._on_test_start)
        hooks.reset_stats.add_listener(self._on_reset_stats)

    def _on_reset_stats(self, **_kwargs) -> None:
        """The web UI's "reset stats": the Voice tab counts calls ending from now on (the file keeps all)."""
        self.outcomes.clear()
        self.diagnoses.clear()

    def _on_test_start(self, environment, **_kwargs) -> None:
        options = environment.parsed_options
        if not self.is_worker and options is not None and hasattr(options, "num_users"):
            # The workers' spawn messages carry custom options: this is how each learns U.
            options.call_user_count = options.num_users or 0
        self.start_clock()
        if self.is_worker and (self._shipper is None or self._shipper.dead):
            self._shipper = gevent.spawn(self._ship_forever)

    def add_listener(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(row)`` with every call row this process owns (standalone or master)."""
        self.listeners.append(callback)

    def stream_count(self) -> int:
        """U: how many caller users share the rate (see the module docstring)."""
        options = self.environment.parsed_options
        explicit = getattr(options, "call_streams", 0) or 0
        if explicit:
            return explicit
        count = getattr(options, "call_user_count", 0) or 0
        if not count and self.environment.runner is not None:
            count = getattr(self.environment.runner, "target_user_count", 0) or 0
        return max(1, int(count))

    # -- records
    def add(self, record: CallRecord) -> None:
        row = calls_module.record_row(record)
        if self.is_worker:
            self.pending.append(row)
        else:
            self._accept([row])

    def _accept(self, rows: list[dict[str, Any]]) -> None:
        if self.writer is None and self.calls_file and rows:  # a closed-loop run leaves no calls file
            self.writer = CallWriter(self.calls_file)
        if self.writer is not None:
            self.writer.write_rows(rows)
        for row in rows:
            self.outcomes[row["outcome"]] += 1
            if row["outcome"] == calls_module.FAILED:
                self.diagnoses[row["diagnosis"]] += 1
            for listener in self.listeners:
                try:
                    listener(row)
                except Exception:  # a listener's bug must not cost a record
                    log.exception("call-record listener %r failed", listener)

    def _on_message(self, environment, msg, **_kwargs) -> None:
        data = msg.data
        self.active_by_worker[data["worker"]] = int(data["active"])
        self._accept(list(data["rows"]))

    def _ship_forever(self) -> None:
        while True:
            gevent.sleep(FLUSH_INTERVAL_S)
            self.flush()

    def flush(self) -> None:
        """A worker: ship the pending call rows and its calls in progress to the master."""
        if not self.is_worker or (not self.pending and self.active == self._shipped_active):
            return  # nothing new (a closed-loop run sends nothing)
        batch, self.pending = self.pending, []
        active = self.active
        try:
            self.environment.runner.send_message(MESSAGE_TYPE, {"worker": self.worker_name, "active": active,
                                                                "rows": batch})
            self._shipped_active = active
        except (OSError, RPCError, RPCSendError) as error:
            self.pending[:0] = batch
            log.warning("could not send %d call records to the master: %s", len(batch), error)

    def close(self) -> None:
        if self._shipper is not None:
            self._shipper.kill(block=False)
        self.flush()
        counts = self.counts()
        if not self.is_worker and counts["offered"]:
            not_started = counts["not_started_on_time"] + counts["harness_limit"]
            log.info("calls: %d offered, %d started, %d completed, %d failed, %d cut by the run's end; %d not started "
                     "(the load generator's limits)%s", counts["offered"], counts["started"], counts["completed"],
                     counts["failed"], counts["run_stopped"], not_started,
                     f"; {self.calls_file}" if self.writer is not None else "")
        if self.writer is not None:
            self.writer.close()

    # -- what the Voice tab and the metrics read
    def active_calls(self) -> int:
        return self.active + sum(self.active_by_worker.values())

    def counts(self) -> dict[str, int]:
        """offered, started, active, completed, failed, run_stopped, not_started_on_time, harness_limit."""
        outcomes = self.outcomes
        active = self.active_calls()
        ended_started = sum(outcomes[o] for o in calls_module.STARTED_OUTCOMES)
        not_started = sum(outcomes[o] for o in calls_module.NOT_STARTED_OUTCOMES)
        return {"offered": ended_started + not_started + active, "started": ended_started + active,
                "active": active, **{o: outcomes[o] for o in calls_module.OUTCOMES}}

    def rows(self) -> list[dict[str, Any]]:
        """The Voice tab's Calls rows (none in a closed-loop run)."""
        counts = self.counts()
        if not counts["offered"]:
            return []
        offered = counts["offered"]
        rows = [
            {"section": "Calls", "item": "offered / started / in progress", "turns": offered,
             "share": f"{counts['started']} / {counts['active']}",
             "detail": "open model: calls arrive on their own clock (--call-rate), whatever the gateway does"},
            {"section": "Calls", "item": "completed / failed / cut by the run's end", "turns": counts["completed"],
             "share": f"{counts['failed']} / {counts['run_stopped']}",
             "detail": ", ".join(f"{code} {n}" for code, n in self.diagnoses.most_common(5)) or "no failed call"},
            {"section": "Calls", "item": "not started: late / harness limit",
             "turns": counts["not_started_on_time"] + counts["harness_limit"],
             "share": f"{counts['not_started_on_time']} / {counts['harness_limit']}",
             "detail": "the load generator's own limits (--call-start-tolerance-ms, --max-concurrent-calls), "
                       "not the gateway's failures"},
        ]
        return rows


class _CallEnded(Exception):
    """A turn of the call failed: the call hangs up (control flow, not an error)."""


class Call:
    """One call in progress: the turns it says go through its own client, tagged with its id."""

    def __init__(self, user: CallerUser, call_id: str, turns_planned: int, offered_rate_per_s: float) -> None:
        self.user = user
        self.call_id = call_id
        self.turns_planned = turns_planned
        self.client = VoiceClient(user)
        self.client.call_id = call_id
        self.client.offered_rate_per_s = offered_rate_per_s
        self.client.scenario = user.scenario
        self.turns_done = 0
        self.setup_ms = math.nan
        self.diagnosis = ""

    def say(self, what: Any, **options: Any):
        """Say ``what`` (as :meth:`VoiceClient.say`); a failed turn ends the call (it hangs up)."""
        try:
            turn = self.client.say(what, **options)
        except (RescheduleTask, StopUser):  # the connection failed: its turn is recorded with the diagnosis
            self._ended_turn()
            raise _CallEnded() from None
        self._ended_turn()
        if not turn.ok:
            raise _CallEnded()
        return turn

    def _ended_turn(self) -> None:
        record = self.client.last_record
        if record is None or record.call_id != self.call_id:
            return
        self.turns_done += 1
        if self.turns_done == 1:
            self.setup_ms = record.connect_ms
        if record.failure and not self.diagnosis:
            self.diagnosis = record.failure


class CallerUser(VoiceUser):
    """One arrival stream of the open model (see the module docstring).

    A call is :meth:`dialogue`: by default the run's corpus, a turn per utterance in a random
    order, ``--call-turns`` of them with the think time between. A subclass gives a scenario of
    its own by overriding it, speaking with ``call.say(...)``.
    """

    scenario = "call"

    def __init__(self, environment) -> None:
        super().__init__(environment)
        self.book: CallBook = self.client.runtime.calls
        self.calls = Group()
        self.stream = next(self.book.stream_numbers)
        self.call_numbers = itertools.count()
        self.schedule = None
        self.next_due_s = math.inf
        self.share = 1.0

    def on_start(self) -> None:
        config = self.config
        if config.call_schedule is None:
            self.client.runtime.logbook.error("CallerUser needs --call-rate (e.g. --call-rate 2/s): this user stops")
            raise StopUser()
        self.schedule = config.call_schedule
        seed = config.call_seed
        runner = self.environment.runner
        worker_index = getattr(runner, "worker_index", 0) if isinstance(runner, WorkerRunner) else 0
        # A stream of its own per user: seeded, the same run offers the same calls.
        self.arrivals_rng = random.Random(f"{seed}:{worker_index}:{self.stream}") if seed >= 0 else random.Random()
        self.rng = random.Random(f"{seed}:{worker_index}:{self.stream}:turns") if seed >= 0 else random.Random()
        self.share = 1.0 / self.book.stream_count()
        self.utterances = list(self.environment.voice.corpus)
        self.next_due_s = self.schedule.next_arrival_s(self.book.clock_s(), self.arrivals_rng, self.share)

    def wait_time(self) -> float:
        """The time left to the next arrival, on the schedule's clock (never after a call ended)."""
        return max(0.0, self.next_due_s - self.book.clock_s())

    @task
    def arrive(self) -> None:
        """The arrival that was due: start its call (or count why not), and draw the next one."""
        due_s = self.next_due_s
        if math.isinf(due_s):
            gevent.sleep(3600)  # the schedule offers no more calls
            return
        early_s = due_s - self.book.clock_s()
        if early_s > 0:  # Locust runs a user's first task at once: the first arrival is still to come
            gevent.sleep(early_s)
        self.next_due_s = self.schedule.next_arrival_s(due_s, self.arrivals_rng, self.share)
        self.offer(due_s)

    def offer(self, due_s: float) -> None:
        book, config = self.book, self.config
        lateness_s = book.clock_s() - due_s
        number = next(self.call_numbers)
        call_id = f"{book.worker_name}:{self.stream}:{number}"
        step = self.schedule.step_index_at(due_s)
        rate = self.schedule.steps[step].rate_per_s
        base = CallRecord(call_id=call_id, worker=book.worker_name, stream=self.stream,
                          scheduled_at=book.wall_time(due_s), offered_rate_per_s=rate, rate_step=step)
        refused = ""
        if lateness_s > config.call_start_tolerance_s:
            refused = calls_module.NOT_STARTED_ON_TIME
            why = f"started {lateness_s * 1000:.0f} ms after its arrival (tolerance {config.call_start_tolerance_s * 1000:.0f} ms)"
        elif book.active >= config.max_concurrent_calls:
            refused = calls_module.HARNESS_LIMIT
            why = f"{book.active} calls already in progress (--max-concurrent-calls {config.max_concurrent_calls})"
        if refused:
            book.add(CallRecord(**{**base.__dict__, "outcome": refused, "diagnosis": why, "ended_at": time.time(),
                                   "turns_planned": 0}))
            return
        turns = config.call_turns.draw(self.rng)
        call = Call(self, call_id, turns, rate)
        book.active += 1
        self.calls.spawn(self._run_call, call, base, time.time(), lateness_s)

    def dialogue(self, call: Call) -> None:
        """The call's turns: ``call.turns_planned`` corpus utterances, the think time between."""
        for number in range(call.turns_planned):
            if number:
                self.think()
            call.say(self.rng.choice(self.utterances))

    def _run_call(self, call: Call, base: CallRecord, started_at: float, lateness_s: float) -> None:
        outcome, stopped = calls_module.FAILED, False
        started = time.monotonic()
        try:
            self.dialogue(call)
            outcome = calls_module.COMPLETED
        except _CallEnded:
            outcome = calls_module.FAILED
        except gevent.GreenletExit:
            stopped = True
            outcome = calls_module.RUN_STOPPED
            raise
        except Exception:  # a bug in the harness or a scenario: the call is not the gateway's failure
            call.diagnosis = call.diagnosis or "harness_error"
            log.exception("call %s ended by an error in the harness or its scenario", call.call_id)
        finally:
            # Recorded before the connection is closed: the close handshake yields, and the run's end
            # may kill this greenlet there (a call that ended by itself must not lose its record).
            if outcome == calls_module.FAILED and not call.diagnosis:
                call.diagnosis = "harness_error"
            if math.isnan(call.setup_ms) and call.client.connection is not None:
                call.setup_ms = call.client.connection.connect_ms  # connected, its first turn cut short
            duration_ms = (time.monotonic() - started) * 1000
            self.book.active -= 1
            self.book.add(CallRecord(**{
                **base.__dict__, "started_at": started_at, "start_lateness_ms": lateness_s * 1000,
                "turns_planned": call.turns_planned, "turns_done": call.turns_done, "setup_ms": call.setup_ms,
                "duration_ms": duration_ms, "outcome": outcome,
                "diagnosis": call.diagnosis if outcome == calls_module.FAILED else "", "ended_at": time.time()}))
            exception = None
            if outcome == calls_module.FAILED:
                known = diagnoses.DIAGNOSES.get(call.diagnosis)
                exception = VoiceFailure(f"{known.headline}: {known.finding}" if known else call.diagnosis)
            self.environment.events.request.fire(request_type="call", name=outcome, response_time=duration_ms,
                                                 response_length=call.turns_done, exception=exception, context={})
            if stopped:
                call.client.on_stop()  # a turn that had not reached the gateway is recorded as run_stopped
            else:
                call.client.hangup()

    def on_stop(self) -> None:
        # The calls in progress end now, each recorded (run_stopped) before the user is gone.
        self.calls.kill(block=True)
        super().on_stop()
