"""Reading a run's files into columnar arrays, and refusing files that cannot be analysed.

:func:`read_run` takes the ``--csv`` prefix of a run and returns a :class:`Run`. Every file is
optional on its own, but a run needs either the harness's turns file or Locust's stats file.
A file that is present but unusable (empty, truncated, binary, someone else's CSV, missing
columns, a non-number where a number belongs) raises :class:`AnalysisError` whose message
names the file and says what is wrong and what to do; files that are absent are listed in
``Run.missing`` so the report can say what it could not show.

The turns file can hold millions of rows: it is parsed by pandas' C reader in chunks (so a
progress line can follow it) and handed on as numpy arrays; nothing here loops over rows in
Python. Locust's CSVs are small (one row per request name) except the history, which is
read the same columnar way.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from analysis.progress import Progress
from voiceharness.errors import AnalysisError
from voiceharness.turns import TURNS_SUFFIX

STATS_SUFFIX = "_stats.csv"
HISTORY_SUFFIX = "_stats_history.csv"
FAILURES_SUFFIX = "_failures.csv"
EXCEPTIONS_SUFFIX = "_exceptions.csv"
# Longest first, so "run_stats_history.csv" is not read as prefix "run_stats_history".
RUN_STATUS_SUFFIX = "_run.json"  # written by voiceharness/locust/run_status.py
RESOURCES_SUFFIX = "_resources.csv"  # written by voiceharness/locust/resources.py
CALLS_SUFFIX = "_calls.csv"  # written by open-model runs (voiceharness/locust/calls.py)
SUFFIXES = (
    CALLS_SUFFIX,
    HISTORY_SUFFIX,
    EXCEPTIONS_SUFFIX,
    FAILURES_SUFFIX,
    STATS_SUFFIX,
    TURNS_SUFFIX,
    RUN_STATUS_SUFFIX,
    RESOURCES_SUFFIX,
)

STATS_COLUMNS = (
    "Type",
    "Name",
    "Request Count",
    "Failure Count",
    "Median Response Time",
    "Average Response Time",
    "Min Response Time",
    "Max Response Time",
)
HISTORY_COLUMNS = ("Timestamp", "User Count", "Name", "Requests/s", "Failures/s")
FAILURES_COLUMNS = ("Method", "Name", "Error", "Occurrences")
EXCEPTIONS_COLUMNS = ("Count", "Message", "Traceback")
# The resource samples. Text columns are named here (gateway_scope says what the gateway's figures
# count: "process tree" or "main process"); every other column (gateway_cpu_percent, gateway_rss_mb,
# and whatever gateway_* variants a newer sampler adds) is read as a number.
RESOURCES_COLUMNS = ("timestamp", "worker", "worker_cpu_percent", "worker_rss_mb")
RESOURCES_TEXT_COLUMNS = ("worker", "gateway_scope")

# Turn-record columns the analysis needs; the rest of voiceharness.turns.COLUMNS are read if there.
TURNS_TEXT_COLUMNS = ("worker", "utterance_id", "expected_intent", "intent", "failure")
TURNS_NUMBER_COLUMNS = (
    "timestamp",
    "user",
    "success",
    "roundtrip_ms",
    "ping_ms",
    "chunks_sent",
    "chunks_received",
    "reconnections",
    "send_lateness_max_ms",
)
# Read when the file has them: older files lack the newer columns (and a column the analysis no
# longer reads, such as the per-turn send_lateness_p99_ms of older files, is simply ignored).
TURNS_OPTIONAL_NUMBER_COLUMNS = (
    "turn_index",
    "intent_ms",
    "reply_ms",
    "connect_ms",
    "confidence",
    "uplink_backlog_ms",
    "uplink_backlog_max_ms",
    "audible_ms",
    "client_tail_ms",
    "gateway_response_ms",
    "reply_audio_ms",
    "reply_sample_rate_hz",
    "playback_stalls",
    "offered_rate_per_s",
)
TURNS_OPTIONAL_TEXT_COLUMNS = (
    "pace",
    "dialect",
    "reply_format",
    "intent_source",
    "audio_intent",
    "failure_detail",
    "call_id",
    "network_profile",
)
TURNS_NOT_EMPTY = ("timestamp", "success")

_PERCENTILE_COLUMN = re.compile(r"^(\d+(?:\.\d+)?)%$")
_CHUNK_ROWS = 250_000
_SNIFF_BYTES = 64 * 1024


@dataclass
class Categorical:
    """A text column as integer ``codes`` into ``labels`` (what pandas calls a categorical)."""

    codes: np.ndarray
    labels: np.ndarray  # object array of str

    def decode(self) -> np.ndarray:
        return self.labels[self.codes]


@dataclass
class Turns:
    """The per-turn records, one numpy array per column."""

    path: str
    numbers: dict[str, np.ndarray]  # float64, NaN where the cell was empty
    texts: dict[str, Categorical]

    def __len__(self) -> int:
        return len(self.numbers["timestamp"])

    def where(self, mask: np.ndarray) -> Turns:
        """The turns where ``mask`` holds (a boolean array as long as the turns)."""
        return Turns(
            self.path,
            {name: column[mask] for name, column in self.numbers.items()},
            {name: Categorical(column.codes[mask], column.labels) for name, column in self.texts.items()},
        )

    def failure_is(self, code: str) -> np.ndarray:
        """Boolean mask of the turns whose failure column equals ``code``."""
        return self.text_is("failure", code)

    def text(self, name: str) -> Categorical:
        """A text column; one the file did not have reads as empty cells."""
        column = self.texts.get(name)
        if column is None:
            return Categorical(np.zeros(len(self), dtype=np.int32), np.array([""], dtype=object))
        return column

    def text_is(self, name: str, *values: str) -> np.ndarray:
        """Boolean mask of the turns whose text column ``name`` equals one of ``values``."""
        column = self.text(name)
        matches = np.flatnonzero(np.isin(column.labels, values))
        return np.isin(column.codes, matches)


@dataclass
class StatsRow:
    """One row of Locust's ``_stats.csv``; ``kind`` is Locust's Type, the harness's metric kind."""

    kind: str
    name: str
    requests: int
    failures: int
    median_ms: float
    average_ms: float
    min_ms: float
    max_ms: float
    requests_per_s: float
    failures_per_s: float
    percentiles_ms: dict[float, float] = field(default_factory=dict)  # 95.0 -> Locust's rounded value


@dataclass
class History:
    """Locust's aggregated history: one sample per second of the run."""

    path: str
    timestamp: np.ndarray
    users: np.ndarray
    requests_per_s: np.ndarray
    failures_per_s: np.ndarray
    total_requests: np.ndarray
    total_failures: np.ndarray


@dataclass
class FailureRow:
    method: str
    name: str
    error: str
    occurrences: int


@dataclass
class ExceptionRow:
    count: int
    message: str
    traceback: str
    nodes: str


@dataclass
class Resources:
    """CPU and memory samples of the load generators (and of a local gateway), one row per sample."""

    path: str
    timestamp: np.ndarray
    worker: np.ndarray  # object array of str: the load generator that took the sample
    numbers: dict[str, np.ndarray]  # every other column, float64, NaN where empty
    texts: dict[str, np.ndarray] = field(default_factory=dict)  # gateway_scope, when the file has it


@dataclass
class Run:
    prefix: str
    turns: Turns | None = None
    stats: list[StatsRow] | None = None
    history: History | None = None
    failures: list[FailureRow] | None = None
    exceptions: list[ExceptionRow] | None = None
    status: dict | None = None  # PREFIX_run.json, when the harness wrote one
    resources: Resources | None = None  # PREFIX_resources.csv, when the harness wrote one
    calls: Any = None  # PREFIX_calls.csv of an open-model run (analysis.calls.Calls), when there is one
    files: dict[str, str] = field(default_factory=dict)  # kind -> path that was read
    missing: list[str] = field(default_factory=list)  # paths looked for and not found

    @property
    def label(self) -> str:
        return os.path.basename(self.prefix) or self.prefix


def normalize_prefix(argument: str) -> str:
    """The run prefix of ``argument``, which may also name one of the run's files."""
    for suffix in SUFFIXES:
        if argument.endswith(suffix):
            return argument[: -len(suffix)]
    return argument


def read_run(
    prefix: str,
    *,
    progress: str = "auto",
    require_turns: bool = False,
) -> Run:
    """Read every file of the run at ``prefix``; raise :class:`AnalysisError` if unusable."""
    prefix = normalize_prefix(prefix)
    if os.path.isdir(prefix):
        raise AnalysisError(
            f"{prefix}: is a directory, not a run prefix. Give the prefix passed to locust --csv, "
            f"e.g. {os.path.join(prefix, 'run')}"
        )
    run = Run(prefix=prefix)
    paths = {
        "turns": prefix + TURNS_SUFFIX,
        "stats": prefix + STATS_SUFFIX,
        "history": prefix + HISTORY_SUFFIX,
        "failures": prefix + FAILURES_SUFFIX,
        "exceptions": prefix + EXCEPTIONS_SUFFIX,
    }
    present = {kind: path for kind, path in paths.items() if os.path.exists(path)}
    run.missing = [path for kind, path in paths.items() if kind not in present]
    if "turns" not in present and "stats" not in present:
        raise AnalysisError(
            f"{prefix}: no run files with this prefix (looked for {paths['turns']} and "
            f"{paths['stats']}). Give the prefix passed to locust --csv, e.g. results/run"
        )
    if require_turns and "turns" not in present:
        raise AnalysisError(
            f"{paths['turns']}: not found. Run with the harness's locustfile, which writes it"
        )
    if "turns" in present:
        run.turns = read_turns(present["turns"], progress=progress)
    if "stats" in present:
        run.stats = read_stats(present["stats"])
    if "history" in present:
        run.history = read_history(present["history"], progress=progress)
    if "failures" in present:
        run.failures = read_failures(present["failures"])
    if "exceptions" in present:
        run.exceptions = read_exceptions(present["exceptions"])
    status_path = prefix + RUN_STATUS_SUFFIX
    if os.path.exists(status_path):
        run.status = read_run_status(status_path)
        present["run_status"] = status_path
    resources_path = prefix + RESOURCES_SUFFIX
    if os.path.exists(resources_path):
        run.resources = read_resources(resources_path)
        present["resources"] = resources_path
    calls_path = prefix + CALLS_SUFFIX
    if os.path.exists(calls_path):
        from analysis.calls import read_calls  # it reads the turns' types from this module

        run.calls = read_calls(calls_path)
        present["calls"] = calls_path
    run.files = present
    return run


def read_run_status(path: str) -> dict:
    """The harness's ``PREFIX_run.json``: turns started vs recorded, completeness, frame-level send lateness."""
    try:
        with open(path, encoding="utf-8") as file:
            status = json.load(file)
    except (OSError, ValueError) as error:
        raise AnalysisError(f"{path}: not a readable run status ({error}). Delete it to analyse without it") from None
    if not isinstance(status, dict) or "turns_started" not in status:
        raise AnalysisError(f"{path}: not a run status written by the harness (no turns_started). "
                            "Delete it to analyse without it")
    return status


# --- checks shared by every reader ------------------------------------------------------------


def _check_text_file(path: str, what: str) -> int:
    """Size of ``path`` after checking it is a non-empty, complete UTF-8 text file."""
    if not os.path.isfile(path):
        raise AnalysisError(f"{path}: is not a file. Give the prefix of the run's CSV files")
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            head = file.read(_SNIFF_BYTES)
            if size:
                file.seek(-1, os.SEEK_END)
                last = file.read(1)
    except OSError as error:
        raise AnalysisError(f"{path}: cannot be read ({error.strerror}). Check its permissions") from None
    if size == 0:
        raise AnalysisError(
            f"{path}: is empty (0 bytes). The run wrote nothing: re-run it, or remove the file"
        )
    if b"\x00" in head:
        raise AnalysisError(
            f"{path}: holds binary data, not {what}. Check that the prefix names the right run"
        )
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # A multi-byte character cut at the sniff boundary is fine.
        if error.start < len(head) - 4:
            raise AnalysisError(
                f"{path}: is not UTF-8 text (byte {error.start}), so not {what}. "
                "Check that the prefix names the right run"
            ) from None
    if last not in (b"\n", b"\r"):
        lines = _count_lines(path)
        raise AnalysisError(
            f"{path}: is truncated: line {lines} ends without a newline (the run or a copy was cut short). "
            f"Remove the incomplete last line or re-run"
        )
    return size


def _count_lines(path: str) -> int:
    count = 0
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            count += block.count(b"\n")
    return count + 1


def _header(path: str) -> list[str]:
    with open(path, newline="", encoding="utf-8", errors="replace") as file:
        try:
            return next(csv.reader(file))
        except (StopIteration, csv.Error):
            return []


def _check_columns(path: str, header: list[str], required: tuple[str, ...], what: str) -> None:
    missing = [name for name in required if name not in header]
    if not missing:
        return
    shown = ",".join(header[:8]) + (",..." if len(header) > 8 else "")
    if len(missing) == len(required) or len(missing) > len(required) // 2:
        raise AnalysisError(
            f"{path}: is not {what}: its header is '{shown}', expected columns {','.join(required)}. "
            "Check that the prefix names the right run"
        )
    raise AnalysisError(
        f"{path}: lacks column(s) {', '.join(missing)} of {what}. "
        "It may come from another tool or version: regenerate it with this harness"
    )


def _number(path: str, line: int, column: str, text: str) -> float:
    text = text.strip()
    if text in ("", "N/A", "nan", "NaN"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise AnalysisError(
            f"{path}: line {line}, column '{column}' holds {text[:40]!r}, not a number. "
            "The file is damaged or not Locust's: regenerate it"
        ) from None


def _small_csv(path: str, required: tuple[str, ...], what: str) -> list[tuple[int, dict[str, str]]]:
    """Rows of a small CSV as (line number, row) after checking the file and its header."""
    _check_text_file(path, what)
    header = _header(path)
    _check_columns(path, header, required, what)
    rows: list[tuple[int, dict[str, str]]] = []
    with open(path, newline="", encoding="utf-8", errors="replace") as file:
        reader = csv.DictReader(file)
        try:
            for row in reader:
                if None in row or any(value is None for value in row.values()):
                    raise AnalysisError(
                        f"{path}: line {reader.line_num} has a different number of fields than the header. "
                        "The file is damaged: regenerate it"
                    )
                rows.append((reader.line_num, row))
        except csv.Error as error:
            raise AnalysisError(
                f"{path}: line {reader.line_num} is not valid CSV ({error}). Regenerate it"
            ) from None
    return rows


# --- Locust's files -----------------------------------------------------------------------------


def read_stats(path: str) -> list[StatsRow]:
    """Locust's ``_stats.csv``: every row except ``Aggregated`` (which mixes all metric kinds)."""
    what = "a Locust stats CSV (_stats.csv)"
    rows = _small_csv(path, STATS_COLUMNS, what)
    if not rows:
        raise AnalysisError(f"{path}: has a header but no rows. The run did not finish writing it: re-run")
    percentile_columns = [
        (float(match.group(1)), name) for name in rows[0][1] if (match := _PERCENTILE_COLUMN.match(name))
    ]
    result = []
    for line, row in rows:
        if row["Name"] == "Aggregated" and not row["Type"]:
            continue

        def number(column: str, line: int = line, row: dict[str, str] = row) -> float:
            return _number(path, line, column, row.get(column, ""))

        result.append(
            StatsRow(
                kind=row["Type"],
                name=row["Name"],
                requests=int(number("Request Count") or 0),
                failures=int(number("Failure Count") or 0),
                median_ms=number("Median Response Time"),
                average_ms=number("Average Response Time"),
                min_ms=number("Min Response Time"),
                max_ms=number("Max Response Time"),
                requests_per_s=number("Requests/s") if "Requests/s" in row else math.nan,
                failures_per_s=number("Failures/s") if "Failures/s" in row else math.nan,
                percentiles_ms={q: number(name) for q, name in percentile_columns},
            )
        )
    return result


def read_failures(path: str) -> list[FailureRow]:
    """Locust's ``_failures.csv`` (Method is the metric kind, Name the utterance)."""
    rows = _small_csv(path, FAILURES_COLUMNS, "a Locust failures CSV (_failures.csv)")
    return [
        FailureRow(
            method=row["Method"],
            name=row["Name"],
            error=row["Error"],
            occurrences=int(_number(path, line, "Occurrences", row["Occurrences"]) or 0),
        )
        for line, row in rows
    ]


def read_exceptions(path: str) -> list[ExceptionRow]:
    """Locust's ``_exceptions.csv``: errors raised in user code, not by the system under test."""
    rows = _small_csv(path, EXCEPTIONS_COLUMNS, "a Locust exceptions CSV (_exceptions.csv)")
    return [
        ExceptionRow(
            count=int(_number(path, line, "Count", row["Count"]) or 0),
            message=row["Message"],
            traceback=row["Traceback"],
            nodes=row.get("Nodes", ""),
        )
        for line, row in rows
    ]


def read_history(path: str, *, progress: str = "auto") -> History:
    """Locust's ``_stats_history.csv``, aggregated rows only (``--csv-full-history`` adds per-name rows)."""
    what = "a Locust history CSV (_stats_history.csv)"
    _check_text_file(path, what)
    _check_columns(path, _header(path), HISTORY_COLUMNS, what)
    columns = {
        "Timestamp": "timestamp",
        "User Count": "users",
        "Requests/s": "requests_per_s",
        "Failures/s": "failures_per_s",
        "Total Request Count": "total_requests",
        "Total Failure Count": "total_failures",
    }
    frame = _read_frame(
        path,
        usecols=lambda name: name in columns or name == "Name",
        text=("Name",),
        numbers=tuple(columns),
        progress=progress,
        what=what,
    )
    keep = frame["Name"] == "Aggregated"
    arrays = {
        attribute: (frame[column][keep] if column in frame else np.full(int(keep.sum()), math.nan))
        for column, attribute in columns.items()
    }
    if not len(arrays["timestamp"]):
        raise AnalysisError(
            f"{path}: has no 'Aggregated' rows, so it is not Locust's history. Check the prefix"
        )
    return History(path=path, **arrays)


def read_resources(path: str) -> Resources:
    """The harness's ``_resources.csv``: CPU and RSS samples over time (may hold no sample yet)."""
    what = "a resources CSV (_resources.csv)"
    _check_text_file(path, what)
    header = _header(path)
    _check_columns(path, header, RESOURCES_COLUMNS, what)
    texts = tuple(name for name in header if name in RESOURCES_TEXT_COLUMNS)
    numbers = tuple(name for name in header if name not in RESOURCES_TEXT_COLUMNS)
    frame = _read_frame(path, usecols=header, text=texts, numbers=numbers, progress="never", what=what)
    return Resources(
        path=path,
        timestamp=frame["timestamp"],
        worker=frame["worker"],
        numbers={name: frame[name] for name in numbers if name != "timestamp"},
        texts={name: frame[name] for name in texts if name != "worker"},
    )


# --- the harness's turns file -------------------------------------------------------------------


def read_turns(path: str, *, progress: str = "auto") -> Turns:
    """The harness's ``_turns.csv`` as numpy arrays (see :mod:`voiceharness.turns`)."""
    what = "a turns CSV (_turns.csv)"
    _check_text_file(path, what)
    header = _header(path)
    _check_columns(path, header, TURNS_TEXT_COLUMNS + TURNS_NUMBER_COLUMNS, what)
    numbers = TURNS_NUMBER_COLUMNS + tuple(c for c in TURNS_OPTIONAL_NUMBER_COLUMNS if c in header)
    texts = TURNS_TEXT_COLUMNS + tuple(c for c in TURNS_OPTIONAL_TEXT_COLUMNS if c in header)
    frame = _read_frame(
        path,
        usecols=texts + numbers,
        text=texts,
        numbers=numbers,
        progress=progress,
        what=what,
        categorical=True,
    )
    turns = Turns(
        path=path,
        numbers={name: frame[name] for name in numbers},
        texts={name: frame[name] for name in texts},
    )
    if not len(turns):
        raise AnalysisError(
            f"{path}: has a header but no turn records: the run recorded no turns. "
            "Check that the load test ran (users > 0, duration long enough)"
        )
    for name in TURNS_NOT_EMPTY:
        empty = np.flatnonzero(np.isnan(turns.numbers[name]))
        if len(empty):
            raise AnalysisError(
                f"{path}: line {int(empty[0]) + 2}, column '{name}' is empty; every turn record has one. "
                "The file is damaged: regenerate it"
            )
    return turns


class _CountingReader(io.RawIOBase):
    """A binary file that counts the bytes pandas has read from it, for the progress line."""

    def __init__(self, file: io.BufferedReader, on_read: Callable[[int], None]) -> None:
        self._file = file
        self._on_read = on_read
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self.count += len(data)
        self._on_read(self.count)
        return data

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _read_frame(
    path: str,
    *,
    usecols,
    text: tuple[str, ...],
    numbers: tuple[str, ...],
    progress: str,
    what: str,
    categorical: bool = False,
) -> dict:
    """Columns of a CSV via pandas' C reader: numbers as float64 arrays, text as Categorical/str."""
    dtypes: dict[str, str] = {name: "category" if categorical else "str" for name in text}
    dtypes.update({name: "float64" for name in numbers})
    size = os.path.getsize(path)
    meter = Progress(os.path.basename(path), size, mode=progress)
    parts = []
    try:
        with open(path, "rb") as raw:
            counting = _CountingReader(raw, meter.update)
            reader = pd.read_csv(
                counting,
                usecols=usecols,
                dtype=dtypes,
                keep_default_na=False,
                na_values={name: ["", "N/A", "nan", "NaN"] for name in numbers},
                chunksize=_CHUNK_ROWS,
                engine="c",
                encoding="utf-8",
            )
            parts.extend(reader)
    except ValueError as error:
        message = str(error)
        if "Error tokenizing data" in message:
            detail = message.split("C error:")[-1].strip().rstrip(".")
            raise AnalysisError(
                f"{path}: is not valid CSV ({detail}). The file is damaged: regenerate it"
            ) from None
        raise AnalysisError(_non_number_message(path, numbers, what)) from None
    except UnicodeDecodeError:
        raise AnalysisError(f"{path}: is not UTF-8 text, so not {what}. Check the prefix") from None
    finally:
        meter.close()
    result: dict = {}
    if not parts:
        for name in numbers:
            result[name] = np.empty(0)
        for name in text:
            result[name] = (
                Categorical(np.empty(0, dtype=np.int32), np.empty(0, dtype=object))
                if categorical
                else np.empty(0, dtype=object)
            )
        return result
    for name in numbers:
        if name in parts[0]:
            result[name] = np.concatenate([part[name].to_numpy(dtype=np.float64) for part in parts])
    for name in text:
        if categorical:
            joined = union_categoricals([part[name] for part in parts])
            result[name] = Categorical(
                np.asarray(joined.codes, dtype=np.int32), np.asarray(joined.categories, dtype=object)
            )
        else:
            result[name] = np.concatenate([part[name].to_numpy(dtype=object) for part in parts])
    return result


def _non_number_message(path: str, numbers: tuple[str, ...], what: str) -> str:
    """Find the first cell of a number column that is not a number (only on the error path)."""
    try:
        frame = pd.read_csv(path, usecols=lambda n: n in numbers, dtype=str, keep_default_na=False)
    except Exception as error:  # noqa: BLE001 - the file is broken in a way the first read did not say
        return f"{path}: cannot be read as {what} ({error}). Regenerate it"
    for name in frame.columns:
        column = frame[name]
        parsed = pd.to_numeric(column.where(~column.isin(["", "N/A"])), errors="coerce")
        bad = np.flatnonzero(parsed.isna().to_numpy() & ~column.isin(["", "N/A"]).to_numpy())
        if len(bad):
            row = int(bad[0])
            return (
                f"{path}: line {row + 2}, column '{name}' holds {column.iloc[row][:40]!r}, not a number. "
                "The file is damaged or from another tool: regenerate it"
            )
    return f"{path}: cannot be read as {what}. Regenerate it"
