"""Where the per-turn records go, in every kind of Locust process, and the Voice quality tab.

* A standalone run writes each record to the turns file as it ends and counts it live; the
  file is flushed at most :data:`WRITE_INTERVAL_S` later, together with all that ended
  meanwhile (a system call per turn cost 4 % of a core at 2,000 streams), and when the run stops.
* A worker batches its records and ships them to the master with Locust's custom messages
  (``voice_turns``), every half second and once more when its test stops.
* The master writes what workers send and counts it for the web UI.

The web UI gets a "Voice quality" tab through Locust's ``template_args`` extension points
(``extended_tabs`` / ``extended_tables`` / ``extended_csv_files``), fed by an
``extended_stats`` entry added to ``/stats/requests``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
from typing import Any

import gevent
from flask import Response, request
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from voiceharness import turns
from voiceharness.live_stats import LiveStats

log = logging.getLogger("voice.records")

MESSAGE_TYPE = "voice_turns"
TAB_KEY = "voice-quality"
WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"
FLUSH_INTERVAL_S = 0.5  # a worker ships its records to the master this often
WRITE_INTERVAL_S = 0.1  # a standalone run flushes the turns file this often


class TurnSink:
    """Accepts records in this process and takes them where they belong."""

    def __init__(self, environment, turns_file: str) -> None:
        self.environment = environment
        self.live = LiveStats()
        self.writer: turns.TurnWriter | None = None
        self.pending: list[dict[str, Any]] = []
        self.received = 0
        self.is_worker = isinstance(environment.runner, WorkerRunner)
        if not self.is_worker and turns_file:
            self.writer = turns.TurnWriter(turns_file)
            log.info("per-turn records: %s", turns_file)
        self.memory: list[dict[str, Any]] = []  # for the web UI download when no file is written
        self._flusher: gevent.Greenlet | None = None

    def add(self, record: turns.TurnRecord) -> None:
        row = turns.record_row(record)
        if self.is_worker:
            self.pending.append(row)
        else:  # written now, flushed with the others (one by one, so no turn waits on a big batch)
            self._accept([row], flush=False)
        if self._flusher is None or self._flusher.dead:
            self._flusher = gevent.spawn_later(FLUSH_INTERVAL_S if self.is_worker else WRITE_INTERVAL_S, self.flush)

    def _accept(self, rows: list[dict[str, Any]], *, flush: bool = True) -> None:
        self.received += len(rows)
        if self.writer is not None:
            self.writer.write_rows(rows, flush=flush)
        else:
            self.memory.extend(rows)
        for row in rows:
            self.live.add(row)

    def flush(self) -> None:
        """Flush the turns file (standalone), or ship the pending records to the master (worker)."""
        if not self.is_worker:
            if self.writer is not None:
                self.writer.flush()
            return
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        try:
            self.environment.runner.send_message(MESSAGE_TYPE, batch)
        except Exception as error:  # the master went away: keep the records for the next try
            self.pending[:0] = batch
            log.warning("could not send %d turn records to the master: %s", len(batch), error)

    def on_message(self, environment, msg, **_kwargs) -> None:
        self._accept(list(msg.data))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def csv_text(self) -> str:
        if self.writer is not None:
            with open(self.writer.path, encoding="utf-8") as file:
                return file.read()
        buffer = io.StringIO()
        writer = turns.csv.DictWriter(buffer, fieldnames=turns.COLUMNS)
        writer.writeheader()
        writer.writerows(self.memory)
        return buffer.getvalue()


_SINK: TurnSink | None = None


def sink() -> TurnSink:
    if _SINK is None:
        raise RuntimeError("voice_records.install() was not called")
    return _SINK


def install(environment, turns_file: str, extra_rows=None) -> TurnSink:
    """Set up the sink for this process (called from the locustfile's init listener).

    ``extra_rows()`` returns more rows for the Voice quality tab (the resource samples).
    """
    global _SINK
    _SINK = TurnSink(environment, turns_file)
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.register_message(MESSAGE_TYPE, _SINK.on_message)
    if environment.web_ui is not None:
        _install_tab(environment, _SINK, extra_rows or (lambda: []))
    return _SINK


@events.test_stop.add_listener
def _on_test_stop(environment, **_kwargs) -> None:
    if _SINK is not None:
        _SINK.flush()


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:
    if _SINK is not None:
        _SINK.flush()
        _SINK.close()


@events.reset_stats.add_listener
def _on_reset_stats(**_kwargs) -> None:
    if _SINK is not None:
        _SINK.live.reset()


def _install_tab(environment, turn_sink: TurnSink, extra_rows) -> None:
    web_ui = environment.web_ui
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
        if request.path != "/stats/requests" or response.status_code != 200:
            return response
        try:
            data = json.loads(response.get_data())
        except ValueError:
            return response
        data["extended_stats"] = [{"key": TAB_KEY, "data": turn_sink.live.rows() + extra_rows()}]
        response.set_data(json.dumps(data))
        return response

    @web_ui.app.route("/voice/turns.csv")
    def voice_turns_csv():
        return Response(
            turn_sink.csv_text(),
            mimetype="text/csv",
            headers={"Content-Disposition": "attachment; filename=voice_turns.csv"},
        )

    @web_ui.app.route("/voice/quality.json")
    def voice_quality_json():
        return Response(json.dumps(turn_sink.live.rows() + extra_rows()), mimetype="application/json")
