"""The run-status marker: ``PREFIX_run.json`` says whether a run's turns file is whole.

Every started turn must end in exactly one row of the turns file. This module counts turn
*starts* on its own (``turn_started()``, called by the user when a turn begins, before any
I/O) so the count of rows can be checked against it, and writes::

    {"complete": false, "state": "running", "turns_started": 12, "turns_recorded": 11, ...}

when the run starts, every ``WRITE_INTERVAL_S`` while it runs, and once more when Locust
quits. ``complete`` is true only when the run ended by itself (``--run-time`` or a stop from
the web UI, not Ctrl-C / SIGTERM) *and* every started turn has its row. A file that still
says ``"state": "running"`` belongs to a process that was killed.

Workers count their own starts and send the running total to the master (custom message
``voice_run_status``) on a timer and when their users have stopped; the master sums them.
Only the master (or a standalone process) writes the file.

Ctrl-C and SIGTERM make Locust fire ``quitting`` *before* it stops the users, so the turns in
progress would be recorded after the turns file is closed. The ``quitting`` listener here is
added from the locustfile's ``init`` listener, after every module-level one, so it runs first
(Locust fires ``quitting`` in reverse order): it notes that the run was cut short, stops the
users — each turn in progress is recorded as ``run_stopped`` — and then writes the marker.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any, ClassVar

import gevent
from locust.exception import RPCError, RPCSendError
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

log = logging.getLogger("voice.run_status")

MESSAGE_TYPE = "voice_run_status"
WRITE_INTERVAL_S = 2.0
RUN_SUFFIX = "_run.json"


class _Status:
    started = 0  # turns started in this process
    by_worker: ClassVar[dict[str, int]] = {}  # master: the latest total each worker reported
    path: str | None = None
    began_at = ""
    environment = None
    records = None  # () -> turns recorded so far in this process (the turn sink's count)
    lateness = None  # () -> this process's frame send lateness summary (frames, p50_ms, p99_ms, max_ms)
    worker_name = ""
    target = ""  # the gateway's URL
    dialect = ""
    lateness_by_worker: ClassVar[dict[str, dict[str, float]]] = {}  # master: each worker's final summary


def turn_started() -> None:
    """A user began a turn: it must end in exactly one row of the turns file."""
    _Status.started += 1


def turns_started() -> int:
    return _Status.started + sum(_Status.by_worker.values())


def status_path(csv_prefix: str | None, turns_file: str) -> str | None:
    """``PREFIX_run.json`` with ``--csv PREFIX``; next to an explicit turns file otherwise."""
    if csv_prefix:
        return f"{csv_prefix}{RUN_SUFFIX}"
    if turns_file:
        return f"{turns_file}.run.json"
    return None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _send_lateness() -> dict[str, dict[str, float]]:
    """Frame-level send lateness per load generator: the true "did it keep up" figure.

    Summing the per-second histograms costs a pass over the whole run, so it is done once, at the end.
    """
    by_worker = dict(_Status.lateness_by_worker)
    if _Status.lateness is not None:
        summary = _Status.lateness()
        if summary.get("frames"):
            by_worker[_Status.worker_name] = summary
    return by_worker


def _write(state: str, *, cut_short: bool = False) -> dict[str, Any]:
    started = turns_started()
    recorded = _Status.records() if _Status.records else 0
    status = {
        "complete": state == "finished" and not cut_short and started == recorded,
        "state": state,
        "cut_short": cut_short,
        "turns_started": started,
        "turns_recorded": recorded,
        "turns_missing": started - recorded,
        "began_at": _Status.began_at,
        "written_at": _now_iso(),
        "target": _Status.target,
        "dialect": _Status.dialect,
    }
    if state == "finished":
        status["send_lateness"] = _send_lateness()
    if _Status.path:
        temporary = f"{_Status.path}.tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(status, file, indent=1)
            file.write("\n")
        os.replace(temporary, _Status.path)  # a reader never sees half a file
    return status


def _write_loop() -> None:
    while True:
        gevent.sleep(WRITE_INTERVAL_S)
        _write("running")


def _send_to_master(final: bool = False) -> None:
    runner = _Status.environment.runner
    data: dict[str, Any] = {"started": _Status.started, "worker": _Status.worker_name}
    if final and _Status.lateness is not None:
        data["send_lateness"] = _Status.lateness()
    try:
        runner.send_message(MESSAGE_TYPE, data)
    except (OSError, RPCError, RPCSendError) as error:  # the master is gone; its file then says the run was cut short
        log.warning("could not send the turn count to the master: %s", error)


def _send_loop() -> None:
    sent = -1
    while True:
        gevent.sleep(WRITE_INTERVAL_S)
        if sent != _Status.started:
            sent = _Status.started
            _send_to_master()


def _on_worker_message(environment, msg, **_kwargs) -> None:
    node = getattr(msg, "node_id", "") or "worker"
    _Status.by_worker[node] = max(_Status.by_worker.get(node, 0), int(msg.data.get("started", 0)))
    lateness = msg.data.get("send_lateness")
    if lateness and lateness.get("frames"):
        _Status.lateness_by_worker[str(msg.data.get("worker") or node)] = lateness


def install(environment, *, csv_prefix: str | None, turns_file: str, records, lateness=None,
            worker_name: str = "", target: str = "", dialect: str = "") -> None:
    """Set up counting and the marker (call from the locustfile's ``init`` listener).

    ``records()`` returns how many turn rows this process has written so far; ``lateness()``
    this process's frame send-lateness summary, reported once at the end of the run.
    """
    _Status.environment = environment
    _Status.records = records
    _Status.lateness = lateness
    _Status.worker_name = worker_name
    _Status.target = target
    _Status.dialect = dialect
    _Status.began_at = _now_iso()
    runner = environment.runner
    events = environment.events
    if isinstance(runner, WorkerRunner):
        gevent.spawn(_send_loop)
        events.test_stop.add_listener(lambda **_kw: _send_to_master(final=True))
        return
    if isinstance(runner, MasterRunner):
        runner.register_message(MESSAGE_TYPE, _on_worker_message)
    _Status.path = status_path(csv_prefix, turns_file)
    if not _Status.path:
        return
    _write("running")
    writer = gevent.spawn(_write_loop)

    def on_quitting(environment, **_kwargs) -> None:
        writer.kill(block=False)
        runner = environment.runner
        # Still running at quitting = Ctrl-C or SIGTERM (a --run-time end stops the runner first).
        cut_short = runner is not None and runner.state in (STATE_RUNNING, STATE_SPAWNING)
        if runner is not None:
            runner.stop()  # users record their turns in progress as run_stopped, now
        if isinstance(runner, MasterRunner):
            gevent.sleep(0.5)  # the workers' last records and counts are on their way
        status = _write("finished", cut_short=cut_short)
        if status["turns_missing"]:
            log.error("%d started turns have no record in the turns file", status["turns_missing"])
        log.info("run status: %s", _Status.path)

    events.quitting.add_listener(on_quitting)
