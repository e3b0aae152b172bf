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
progress would be recorded after the turns file is closed. The runtime's shutdown
(:meth:`voiceharness.locust.runtime.VoiceRuntime.shutdown`) therefore notes that the run was cut
short, stops the users — each turn in progress is recorded as ``run_stopped`` — and only then
calls :meth:`RunStatus.finish`.

One :class:`RunStatus` per Locust environment, the runtime's (``environment.voice.run_status``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import gevent
from locust.exception import RPCError, RPCSendError
from locust.runners import MasterRunner, WorkerRunner

log = logging.getLogger("voice.run_status")

MESSAGE_TYPE = "voice_run_status"
WRITE_INTERVAL_S = 2.0
RUN_SUFFIX = "_run.json"


def status_path(csv_prefix: str | None, turns_file: str) -> str | None:
    """``PREFIX_run.json`` with ``--csv PREFIX``; next to an explicit turns file otherwise."""
    if csv_prefix:
        return f"{csv_prefix}{RUN_SUFFIX}"
    if turns_file:
        return f"{turns_file}.run.json"
    return None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunStatus:
    """Counts turn starts in this process and writes (or, on a worker, reports) the run's status."""

    def __init__(self, environment, *, path: str | None, records: Callable[[], int],
                 lateness: Callable[[], dict[str, float]] | None = None, worker_name: str = "",
                 target: str = "", dialect: str = "") -> None:
        self.environment = environment
        self.path = path  # None on a worker, or when there is nowhere to write
        self.records = records  # () -> turns recorded so far in this process (the turn sink's count)
        self.lateness = lateness  # () -> this process's frame send lateness summary (frames, p50_ms, p99_ms, max_ms)
        self.worker_name = worker_name
        self.target = target  # the gateway's URL
        self.dialect = dialect
        self.started = 0  # turns started in this process
        self.by_worker: dict[str, int] = {}  # master: the latest total each worker reported
        self.lateness_by_worker: dict[str, dict[str, float]] = {}  # master: each worker's final summary
        self.began_at = _now_iso()
        self._greenlet: gevent.Greenlet | None = None

    def turn_started(self) -> None:
        """A user began a turn: it must end in exactly one row of the turns file."""
        self.started += 1

    def turns_started(self) -> int:
        return self.started + sum(self.by_worker.values())

    def install(self, hooks, runner) -> None:
        """Start reporting (a worker, to its master) or writing the marker every WRITE_INTERVAL_S."""
        if isinstance(runner, WorkerRunner):
            self.path = None
            self._greenlet = gevent.spawn(self._send_loop)
            return
        if isinstance(runner, MasterRunner):
            runner.register_message(MESSAGE_TYPE, self._on_worker_message)
        if self.path:
            self.write("running")
            self._greenlet = gevent.spawn(self._write_loop)

    def finish(self, *, cut_short: bool) -> dict[str, Any] | None:
        """Write the final status (after the users were stopped and their last records arrived)."""
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        if not self.path:
            return None
        status = self.write("finished", cut_short=cut_short)
        if status["turns_missing"]:
            log.error("%d started turns have no record in the turns file", status["turns_missing"])
        log.info("run status: %s", self.path)
        return status

    def send_lateness(self) -> dict[str, dict[str, float]]:
        """Frame-level send lateness per load generator: the true "did it keep up" figure.

        Summing the per-second histograms costs a pass over the whole run, so it is done once, at the end.
        """
        by_worker = dict(self.lateness_by_worker)
        if self.lateness is not None:
            summary = self.lateness()
            if summary.get("frames"):
                by_worker[self.worker_name] = summary
        return by_worker

    def write(self, state: str, *, cut_short: bool = False) -> dict[str, Any]:
        started = self.turns_started()
        recorded = self.records()
        status = {
            "complete": state == "finished" and not cut_short and started == recorded,
            "state": state,
            "cut_short": cut_short,
            "turns_started": started,
            "turns_recorded": recorded,
            "turns_missing": started - recorded,
            "began_at": self.began_at,
            "written_at": _now_iso(),
            "target": self.target,
            "dialect": self.dialect,
        }
        if state == "finished":
            status["send_lateness"] = self.send_lateness()
        if self.path:
            temporary = f"{self.path}.tmp"
            with open(temporary, "w", encoding="utf-8") as file:
                json.dump(status, file, indent=1)
                file.write("\n")
            os.replace(temporary, self.path)  # a reader never sees half a file
        return status

    def _write_loop(self) -> None:
        while True:
            gevent.sleep(WRITE_INTERVAL_S)
            self.write("running")

    def send_to_master(self, final: bool = False) -> None:
        data: dict[str, Any] = {"started": self.started, "worker": self.worker_name}
        if final and self.lateness is not None:
            data["send_lateness"] = self.lateness()
        try:
            self.environment.runner.send_message(MESSAGE_TYPE, data)
        except (OSError, RPCError, RPCSendError) as error:  # the master is gone; its file then says the run was cut short
            log.warning("could not send the turn count to the master: %s", error)

    def _send_loop(self) -> None:
        sent = -1
        while True:
            gevent.sleep(WRITE_INTERVAL_S)
            if sent != self.started:
                sent = self.started
                self.send_to_master()

    def _on_worker_message(self, environment, msg, **_kwargs) -> None:
        node = getattr(msg, "node_id", "") or "worker"
        self.by_worker[node] = max(self.by_worker.get(node, 0), int(msg.data.get("started", 0)))
        lateness = msg.data.get("send_lateness")
        if lateness and lateness.get("frames"):
            self.lateness_by_worker[str(msg.data.get("worker") or node)] = lateness
