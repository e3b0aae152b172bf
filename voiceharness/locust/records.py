"""Where the per-turn records go, in every kind of Locust process, and the Voice quality tab.

* A standalone run counts each record live as it ends, and writes it to the turns file at most
  :data:`WRITE_INTERVAL_S` later, in one batch with all that ended meanwhile, from a greenlet of
  its own (a system call per turn cost 4 % of a core at 2,000 streams, the csv module per turn
  on the user's greenlet 2 % more), and when the run stops.
* A worker batches its records and ships them to the master with Locust's custom messages
  (``voice_turns``), every half second and once more when its test stops.
* The master writes what workers send and counts it for the web UI.

Whatever else wants every record on the process that owns them (the Prometheus endpoint of
:mod:`.metrics`) registers with :meth:`TurnSink.add_listener`: called with each row as this
process accepts it — the standalone process, or the master — never on a worker.

One sink per Locust environment, the runtime's (``environment.voice.sink``); it registers its
messages, its Voice quality tab and its handshake in :meth:`TurnSink.install`.

The web UI gets a "Voice quality" tab through Locust's ``template_args`` extension points
(``extended_tabs`` / ``extended_tables`` / ``extended_csv_files``), fed by an
``extended_stats`` entry added to ``/stats/requests``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
from flask import Response, request, send_file
from locust.exception import RPCError, RPCSendError
from locust.runners import MasterRunner, WorkerRunner

from voiceharness import turns
from voiceharness.live_stats import LiveStats


def worker_name() -> str:
    """``host:pid`` of this load-generator process, read when asked: Locust's ``--processes``
    forks its workers after the locustfile is imported, so a name taken at import would be the
    parent's in every child."""
    return f"{socket.gethostname()}:{os.getpid()}"

log = logging.getLogger("voice.records")

MESSAGE_TYPE = "voice_turns"
TAB_KEY = "voice-quality"
FLUSH_INTERVAL_S = 0.5  # a worker ships its records to the master this often
WRITE_INTERVAL_S = 0.1  # a standalone run flushes the turns file this often


class TurnSink:
    """Accepts records in this process and takes them where they belong."""

    def __init__(self, environment, turns_file: str) -> None:
        self.environment = environment
        self.turns_file = turns_file
        self.live = LiveStats()
        self.writer: turns.TurnWriter | None = None
        self.pending: list[dict[str, Any]] = []  # a worker's rows, not yet shipped to the master
        self.unwritten: list[list[Any]] = []  # a standalone run's rows of cells, not yet in the file
        self.received = 0
        self.is_worker = isinstance(environment.runner, WorkerRunner)
        self.spooled = False  # the turns go to a temporary file of ours (no --csv): removed at quit
        # Called with each row accepted by this process when it owns the records (standalone or master).
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._flusher: gevent.Greenlet | None = None
        self._failed_listeners: list = []

    def add_listener(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(row)`` with every record row this sink accepts from now on."""
        self.listeners.append(callback)

    def install(self, hooks, runner, web_ui=None, extra_rows=None, headline_inputs=None) -> None:
        """Open the turns file (where records are written), register the master's and workers'
        messages, and the Voice quality tab when there is a web UI. ``extra_rows()`` returns more
        rows for the tab (the resource samples); ``headline_inputs()`` the worst load generator's
        latest p99 send lateness (or None) and the count of exceptions in user code."""
        if not self.is_worker:
            turns_file = self.turns_file
            if not turns_file:
                # A web-UI run without --csv still offers the turns for download; they are spooled
                # to disk, not kept in memory, so a day-long run does not grow.
                handle, turns_file = tempfile.mkstemp(prefix="voice_turns_", suffix=".csv")
                os.close(handle)
                self.spooled = True
            self.writer = turns.TurnWriter(turns_file)
            log.info("per-turn records: %s%s", turns_file, " (temporary: download it from the Voice quality tab)"
                     if self.spooled else "")
        if isinstance(runner, MasterRunner):
            runner.register_message(MESSAGE_TYPE, self.on_message)
            self._install_flush_handshake_master(hooks, runner)
        elif isinstance(runner, WorkerRunner):
            runner.register_message(FLUSH_REQUEST, self._on_flush_request, concurrent=True)
        if web_ui is not None:
            _install_tab(web_ui, self, extra_rows or list, headline_inputs or (lambda: (None, 0)))

    def add(self, record: turns.TurnRecord) -> None:
        if self.is_worker:
            self.pending.append(turns.record_row(record))
        else:  # counted now, written with the others at the next flush (cells formatted once)
            cells = turns.record_cells(record)
            self.unwritten.append(cells)
            self._accept([turns.row_of_cells(cells)], write=False)
        if self._flusher is None or self._flusher.dead:
            self._flusher = gevent.spawn_later(FLUSH_INTERVAL_S if self.is_worker else WRITE_INTERVAL_S, self.flush)

    def _accept(self, rows: list[dict[str, Any]], *, write: bool = True) -> None:
        self.received += len(rows)
        if write and self.writer is not None:
            self.writer.write_rows(rows)
        for row in rows:
            self.live.add(row)
        for listener in self.listeners:
            for row in rows:
                try:
                    listener(row)
                except Exception:  # a listener's bug must not cost a record or a turn: logged once
                    if listener not in self._failed_listeners:
                        self._failed_listeners.append(listener)
                        log.exception("turn-record listener %r failed (logged once)", listener)

    def flush(self) -> None:
        """Flush the turns file (standalone), or ship the pending records to the master (worker)."""
        if not self.is_worker:
            rows, self.unwritten = self.unwritten, []
            if self.writer is not None:
                self.writer.write_cells(rows)
            return
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            self.environment.runner.send_message(MESSAGE_TYPE, batch)
        except (OSError, RPCError, RPCSendError) as error:  # the master went away: keep the records for the next try
            self.pending[:0] = batch
            log.warning("could not send %d turn records to the master: %s", len(batch), error)

    def on_message(self, environment, msg, **_kwargs) -> None:
        self._accept(list(msg.data))

    def close(self) -> None:
        if self._flusher is not None:
            self._flusher.kill(block=False)  # a flush due later would find the file closed
        if self.writer is not None:
            self.flush()  # the rows not written yet
            self.writer.close()
            if self.spooled:
                with contextlib.suppress(OSError):
                    os.remove(self.writer.path)

    def csv_text(self) -> str:
        if self.writer is None:  # a worker: its records are at the master
            return ",".join(turns.COLUMNS) + "\n"
        self.flush()
        with open(self.writer.path, encoding="utf-8") as file:
            return file.read()

    # The end of a distributed run. At --run-time's end Locust's master sends its workers "quit"
    # and gives them half a second before it stops listening: the records of the turns still in
    # progress (each ends as run_stopped) and the last batches were lost, and with --processes a
    # run's file held one worker's turns. So when a master begins to stop, it asks every worker to
    # stop its users and send all it holds, and waits for each to say it has.
    def _on_flush_request(self, environment, msg, **_kwargs) -> None:
        """Worker: stop the users (their turns in progress are recorded), ship every record, say so."""
        runner = environment.runner
        runner.stop()  # fires test_stop: records and the final run status go to the master first
        self.flush()
        try:
            runner.send_message(FLUSHED, {"records": self.received})
        except (OSError, RPCError, RPCSendError) as error:
            log.warning("could not tell the master that the records are sent: %s", error)

    def _install_flush_handshake_master(self, hooks, runner) -> None:
        waiting: set[str] = set()
        done = gevent.event.Event()

        def on_flushed(environment, msg, **_kwargs) -> None:
            waiting.discard(getattr(msg, "node_id", ""))
            if not waiting:
                done.set()

        def on_test_stopping(environment, **_kwargs) -> None:
            waiting.clear()
            waiting.update(client.id for client in runner.clients.all)
            if not waiting:
                return
            done.clear()
            runner.send_message(FLUSH_REQUEST, {})
            timeout_s = (environment.stop_timeout or 0) + FLUSH_WAIT_EXTRA_S
            if not done.wait(timeout_s):
                log.error("%d worker(s) did not send their last turn records within %.0f s: %s",
                          len(waiting), timeout_s, ", ".join(sorted(waiting)))

        runner.register_message(FLUSHED, on_flushed)
        hooks.test_stopping.add_listener(on_test_stopping)


FLUSH_REQUEST = "voice_flush"
FLUSHED = "voice_flushed"
FLUSH_WAIT_EXTRA_S = 10.0  # beyond --stop-timeout, for the last batches to arrive


STATIC = os.path.join(os.path.dirname(__file__), "static")


def _install_tab(web_ui, turn_sink: TurnSink, extra_rows, headline_inputs) -> None:
    def tab_rows() -> list[dict[str, Any]]:
        lateness_p99_ms, exceptions = headline_inputs()
        live = turn_sink.live
        return live.headline(lateness_p99_ms=lateness_p99_ms, exceptions=exceptions) + live.rows() + extra_rows()

    web_ui.template_args["extended_tabs"] = [{"title": "Voice quality", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [
        {
            "key": TAB_KEY,
            "structure": [
                {"key": "section", "title": "Metric"},
                {"key": "item", "title": "Band / utterance / diagnosis"},
                {"key": "turns", "title": "Turns"},
                {"key": "share", "title": "Share"},
                {"key": "detail", "title": "Meaning"},
            ],
        }
    ]
    web_ui.template_args["extended_csv_files"] = [
        {"href": "/voice/turns.csv", "title": "Download per-turn records (CSV)"}
    ]

    @web_ui.app.after_request
    def add_voice_stats(response):
        if response.status_code != 200:
            return response
        if request.path == "/" and response.mimetype == "text/html":
            # The tab's live chart: a script of ours on Locust's page (its extended tabs are tables only).
            page = response.get_data(as_text=True)
            if "voice-tab.js" not in page and "</body>" in page:
                response.set_data(page.replace("</body>", '<script src="./voice/voice-tab.js"></script></body>', 1))
            return response
        if request.path != "/stats/requests":
            return response
        try:
            data = json.loads(response.get_data())
        except ValueError:
            return response
        data["extended_stats"] = [{"key": TAB_KEY, "data": tab_rows()}]
        response.set_data(json.dumps(data))
        return response

    @web_ui.app.route("/voice/voice-tab.js")
    def voice_tab_js():
        return send_file(os.path.join(STATIC, "voice-tab.js"), mimetype="text/javascript", max_age=0)

    @web_ui.app.route("/voice/chart.json")
    def voice_chart_json():
        return Response(json.dumps(turn_sink.live.chart.chart()), mimetype="application/json")

    @web_ui.app.route("/voice/turns.csv")
    def voice_turns_csv():
        if turn_sink.writer is not None:  # streamed from disk, however long the run
            turn_sink.writer.flush()
            return send_file(turn_sink.writer.path, mimetype="text/csv", as_attachment=True,
                             download_name="voice_turns.csv", max_age=0)
        return Response(
            turn_sink.csv_text(),
            mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=voice_turns.csv"},
        )

    @web_ui.app.route("/voice/quality.json")
    def voice_quality_json():
        return Response(json.dumps(tab_rows()), mimetype="application/json")
