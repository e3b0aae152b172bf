"""The per-turn record: one row per started turn, the source of exact percentiles.

Locust rounds response times in its stats, so the harness also writes every turn, unrounded,
to ``PREFIX_turns.csv`` next to Locust's CSV files. Every started turn ends in exactly one
record: a success (``failure`` empty) or a failure with a diagnosis code from
:mod:`voiceharness.diagnoses`.

Times are milliseconds as floats; a metric that was not observed (no reply audio, say) is an
empty cell, read back as NaN.

A record is built once, when its turn is over (:meth:`TurnRecord.build`), from three parts each
made by the module that owns it: who said what (:class:`TurnContext`, the client's), what was
measured (:class:`TurnTimings`, the turn's meter in :mod:`voiceharness.turn`) and the verdict
(:class:`voiceharness.judge.Verdict`). It is frozen: a scenario that overrules the verdict
(``turn.failure(...)``) gets a new record (:meth:`TurnRecord.with_verdict`).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import operator
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from voiceharness.logbook import redact_quoted, redact_transcript

TURNS_SUFFIX = "_turns.csv"


@dataclass(frozen=True)
class TurnContext:
    """Who said what, where: known before the turn starts (the client's part of a record)."""

    timestamp: float = 0.0
    worker: str = ""
    user: int = 0
    connection_id: str = ""
    turn_index: int = 0
    scenario: str = ""
    utterance_id: str = ""
    request_name: str = ""
    expected_intent: str = ""
    speech_ms: float = math.nan
    pace: str = "realtime"
    dialect: str = "reference"
    reconnections: int = 0
    connect_ms: float = math.nan
    call_id: str = ""  # the open-model call this turn belongs to (voiceharness.locust.calls), else empty
    offered_rate_per_s: float = math.nan  # the call rate offered when the turn's call was scheduled
    network_profile: str = ""
    redact: bool = False  # keep the users' and the gateway's words out of the record


@dataclass(frozen=True)
class TurnTimings:
    """What one turn measured (the meter's part of a record): ms from the end of speech, counts,
    and how the reply came. All NaN/empty for a turn that never reached the gateway."""

    roundtrip_ms: float = math.nan
    audible_ms: float = math.nan
    intent_ms: float = math.nan
    reply_ms: float = math.nan
    turn_ms: float = math.nan
    client_tail_ms: float = math.nan
    gateway_response_ms: float = math.nan
    ping_ms: float = math.nan
    chunks_sent: int = 0
    chunks_received: int = 0
    reply_audio_bytes: int = 0
    reply_complete: bool = False
    send_lateness_max_ms: float = math.nan
    uplink_backlog_ms: float = math.nan
    uplink_backlog_max_ms: float = math.nan
    reply_format: str = ""
    reply_audio_ms: float = math.nan
    reply_sample_rate_hz: int = 0
    playback_stalls: int | None = None
    close_code: int | None = None


@dataclass(frozen=True)
class TurnRecord:
    timestamp: float = 0.0  # wall-clock seconds since the epoch when the turn started
    worker: str = ""  # "host:pid" of the load generator process
    user: int = 0  # Locust user number within its worker
    connection_id: str = ""  # the sessionId sent in the header
    turn_index: int = 0  # turn number within the user's life (0-based)
    scenario: str = ""
    utterance_id: str = ""
    request_name: str = ""  # the name Locust's events carry (the utterance id, its intent, or say(name=...))
    expected_intent: str = ""
    intent: str = ""  # recognised intent, empty when none arrived
    confidence: float = math.nan
    transcript: str = ""
    success: bool = False
    failure: str = ""  # diagnosis code, empty on success
    failure_detail: str = ""
    close_code: int | None = None
    connect_ms: float = math.nan  # of the connection this turn ran on (NaN if reused and already counted)
    roundtrip_ms: float = math.nan  # end of speech -> first reply audio frame
    intent_ms: float = math.nan  # end of speech -> intent metadata
    reply_ms: float = math.nan  # end of speech -> last reply audio frame
    turn_ms: float = math.nan  # end of speech -> the turn was over (the reply's end, its deadline, or the drop)
    ping_ms: float = math.nan  # most recent WebSocket ping -> pong on this connection
    speech_ms: float = math.nan  # duration of the utterance's audio sent
    chunks_sent: int = 0
    chunks_received: int = 0
    reply_audio_bytes: int = 0
    reply_complete: bool = False  # reply_end seen (or the inactivity gap closed a reply that had audio)
    reconnections: int = 0  # reconnects of this user's connection so far
    # the latest of this turn's frames: max of (actual - due) send time. A per-turn p99 would be this
    # same frame for any turn under 100 frames (every corpus utterance), so none is recorded; the
    # frame-level percentiles are in PREFIX_run.json. Older files may still hold send_lateness_p99_ms.
    send_lateness_max_ms: float = math.nan
    # audio still unsent in the kernel's send queue when the last frame was handed over (a link
    # slower than real time: the roundtrip includes this much); NaN where the kernel cannot tell
    uplink_backlog_ms: float = math.nan
    pace: str = "realtime"  # realtime (frame k at t0 + k * frame length) or fast (as fast as the socket takes)
    dialect: str = "reference"  # the protocol preset the turn spoke (voiceharness.dialects)
    # How the reply came: "metadata", "wav", "pcm", joined by "+" in order of arrival ("metadata+pcm")
    reply_format: str = ""
    # Where `intent` came from: "metadata" (the gateway said it), "audio" (the judge heard it in the
    # reply audio), or "" (not judged: no reply, or the turn was not sampled for judging)
    intent_source: str = ""
    audio_intent: str = ""  # the intent the judge heard in the reply audio (cross-check or sole source)
    reply_transcript: str = ""  # what the judge heard in the reply audio
    reply_text: str = ""  # the reply sentence the gateway's metadata gave, if any
    audible_ms: float = math.nan  # end of speech -> first reply sample above the speech threshold
    reply_audio_ms: float = math.nan  # duration of the reply audio
    reply_sample_rate_hz: int = 0
    # frame-streamed replies: times the audio would have run out if played as it arrived
    playback_stalls: int | None = None
    # The roundtrip in two: end of speech -> the last audio frame (or the end marker) handed to the
    # socket before the first reply audio (the client's part: trailing silence, the marker, or the
    # silence a gateway's endpointer waits for) ...
    client_tail_ms: float = math.nan
    # ... and from then -> the first reply audio (the gateway's part)
    gateway_response_ms: float = math.nan

    # The reply judge's verdict, when it heard the reply (why it said what it said): the winning
    # intent's score (0-1), the runner-up intent and its score, and the expectations file it judged by
    judge_score: float = math.nan
    judge_runner_up: str = ""
    judge_runner_up_score: float = math.nan
    judge_expectations: str = ""

    # Open-model runs (--call-rate): the call this turn is part of ("" in a closed-loop run), and the
    # call rate, calls a second over the whole run, offered when that call was scheduled
    call_id: str = ""
    offered_rate_per_s: float = math.nan
    # The --network profile the turn's user was on (docs/networks.md), "" for the machine's own
    # link; and the emulated uplink's largest backlog while the turn streamed (ms of audio; NaN
    # unshaped). On a shaped link uplink_backlog_ms also counts the emulated link's backlog.
    network_profile: str = ""
    uplink_backlog_max_ms: float = math.nan

    @classmethod
    def build(cls, context: TurnContext, timings: TurnTimings, verdict: Any) -> TurnRecord:
        """The record of a turn that is over: its context, what it measured, and the verdict
        (a :class:`voiceharness.judge.Verdict`). With ``context.redact`` the users' and the
        gateway's words are kept out of it."""
        fields = dict(_RECORD_DEFAULTS)
        fields.update(zip(_CONTEXT_NAMES, _context_values(context)))
        fields.update(zip(_TIMING_NAMES, _timing_values(timings)))
        fields.update(verdict.record_fields())
        if verdict.intent_source == "audio":
            # The intent was carried by the reply audio as a whole: it was known when the audio was in.
            fields["intent_ms"] = timings.reply_ms
        record = frozen_from_fields(cls, fields)
        return record.redacted() if context.redact else record

    def with_verdict(self, verdict: Any, *, redact: bool = False) -> TurnRecord:
        """This record with another verdict's success and diagnosis (a scenario's own check)."""
        detail = redact_quoted(verdict.failure_detail) if redact else verdict.failure_detail
        return evolve(self, success=verdict.success, failure=verdict.failure, failure_detail=detail)

    def redacted(self) -> TurnRecord:
        """The record without the words said: transcripts and reply texts replaced, quoted words in
        the failure detail too (``--redact``)."""
        return evolve(
            self,
            transcript=redact_transcript(self.transcript), reply_text=redact_transcript(self.reply_text),
            reply_transcript=redact_transcript(self.reply_transcript),
            failure_detail=redact_quoted(self.failure_detail),
        )


def frozen_from_fields(cls: type[Any], fields: dict[str, Any]) -> Any:
    """An instance of the frozen dataclass ``cls`` from a dict holding every one of its fields.

    The same object its ``__init__`` makes, without that ``__init__``'s ``object.__setattr__``
    per field (frozen dataclasses set each field that way): a record is built per turn, a
    thousand times a second at 2,000 voices, and its 47 fields made that a third of the turn's
    bookkeeping. Only for dataclasses without ``__post_init__`` or ``__slots__``.
    """
    instance = object.__new__(cls)
    instance.__dict__.update(fields)
    return instance


def evolve(instance: Any, **changes: Any) -> Any:
    """A copy of a frozen dataclass instance with some fields changed: ``dataclasses.replace``
    without its pass over every field and its ``__init__`` (see :func:`frozen_from_fields`)."""
    return frozen_from_fields(type(instance), {**instance.__dict__, **changes})


_RECORD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TurnRecord)}
_CONTEXT_NAMES = tuple(f.name for f in dataclasses.fields(TurnContext) if f.name != "redact")
_context_values = operator.attrgetter(*_CONTEXT_NAMES)
_TIMING_NAMES = tuple(f.name for f in dataclasses.fields(TurnTimings))
_timing_values = operator.attrgetter(*_TIMING_NAMES)
EMPTY_RECORD = TurnRecord()  # a turn's record before its own is built (frozen: safe to share)

COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TurnRecord))
FLOAT_COLUMNS = tuple(f.name for f in dataclasses.fields(TurnRecord) if f.type == "float")


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return round(value, 3)
    if value is None:
        return ""
    return value


# Every field at once, in COLUMNS order, read in C: a row per turn at thousands of turns a second.
_FIELDS = operator.attrgetter(*COLUMNS)
_FLOAT = float
isnan = math.isnan
_BOOL = bool


def record_cells(record: TurnRecord) -> list[Any]:
    """A record's CSV cells in :data:`COLUMNS` order, each formatted once (the turns file's row)."""
    cells: list[Any] = []
    append = cells.append
    for value in _FIELDS(record):  # every field is a scalar: no need for asdict's deep copy
        kind = type(value)
        if kind is _FLOAT:
            append("" if isnan(value) else round(value, 3))
        elif kind is _BOOL:
            append(int(value))
        elif value is None:
            append("")
        else:
            append(value)
    return cells


def row_of_cells(cells: list[Any]) -> dict[str, Any]:
    """The row (column -> cell) of cells that :func:`record_cells` made."""
    return dict(zip(COLUMNS, cells, strict=True))


def record_row(record: TurnRecord | Mapping[str, Any]) -> dict[str, Any]:
    """The CSV row of a record (or of a dict of its fields, as sent between processes)."""
    if isinstance(record, TurnRecord):
        return row_of_cells(record_cells(record))
    return {name: _cell(record.get(name)) for name in COLUMNS}


def open_run_csv(path: str | os.PathLike[str]) -> tuple[str, IO[str]]:
    """One of a run's CSV files, opened for writing (its directory made): the path and the file,
    held open by its writer until it closes it."""
    path = os.fspath(path)
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    return path, open(path, "w", newline="", encoding="utf-8")


class TurnWriter:
    """Appends records to a turns CSV, flushing after every call unless told to wait for :meth:`flush`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path, self._file = open_run_csv(path)
        self._row_writer = csv.writer(self._file)
        self._row_writer.writerow(COLUMNS)
        self._file.flush()
        self.count = 0

    def write(self, record: TurnRecord | Mapping[str, Any]) -> None:
        self.write_rows([record_row(record)])

    def write_many(self, records: Iterable[TurnRecord | Mapping[str, Any]]) -> None:
        self.write_rows(record_row(record) for record in records)

    def write_rows(self, rows: Iterable[Mapping[str, Any]], *, flush: bool = True) -> None:
        """Append rows that :func:`record_row` already made (a missing column is an empty cell).

        ``flush=False`` leaves them in the file's buffer until the next :meth:`flush`.
        """
        self.write_cells([[row.get(name, "") for name in COLUMNS] for row in rows], flush=flush)

    def write_cells(self, rows: list[list[Any]], *, flush: bool = True) -> None:
        """Append rows of cells in :data:`COLUMNS` order (:func:`record_cells`), in one call."""
        if self._file.closed:
            if rows:
                raise ValueError(f"{len(rows)} turn records arrived after {self.path} was closed")
            return
        self._row_writer.writerows(rows)
        self.count += len(rows)
        if flush:
            self._file.flush()

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def turns_path(csv_prefix: str) -> str:
    """Where the turns file of a Locust ``--csv PREFIX`` run lives."""
    return f"{csv_prefix}{TURNS_SUFFIX}"

