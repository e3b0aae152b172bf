"""Reply listeners in worker processes, so a decode never runs on the load generator's loop.

::

    pool = ListenerPool("smartjarvis", workers=1, max_queue=8, sample_fraction=1.0)
    accepted = pool.submit(pcm, 22050, "echo hello world", on_judged)   # False: skipped
    # ... on_judged(Judgement(heard=Heard(intent="ECHO", ...), error=None, ...)) runs later
    pool.stats()   # {"judged": 120, "errors": 0, "skipped_behind": 3, "skipped_sampling": 0, ...}
    pool.close()

A decode takes tens of milliseconds of CPU per reply (hundreds for the full language model),
which on the event loop of a Locust process would make every other user's frames late. Each
worker is ``python -m voiceharness.listener_worker`` (:mod:`voiceharness.listener_worker`
documents the pipe protocol), started with :class:`subprocess.Popen` — not multiprocessing,
which does not mix with gevent's monkey-patching — and each has one driver thread that sends it
one reply at a time and reads the result back. Under gevent those threads are greenlets and the
pipes are cooperative, so the same code serves a plain program and a Locust process.

* **Falling behind.** Replies wait in one queue of ``max_queue`` entries; when it is full,
  :meth:`ListenerPool.submit` returns False and counts ``skipped_behind``: the load generator
  never waits for the judge, it judges fewer replies (and says so in :meth:`~ListenerPool.stats`).
* **Stale replies.** With ``max_wait_s`` (the live judge: :data:`LIVE_MAX_WAIT_S`), a reply no
  worker could take within it once running (workers starved of CPU; the wait for a worker's
  model to load does not count) is resolved unheard
  (``Judgement(heard=None, error=None)``) and counted ``skipped_stale``.
* **Sampling.** ``sample_fraction`` (``--judge-sample``) judges that share of the replies, spread
  evenly (every other one at 0.5), counting the rest as ``skipped_sampling``.
* **A worker that dies** resolves its reply as an error (never lost) and is restarted, up to
  ``max_restarts`` times per worker; after that its share of the queue goes to the others.
* **Callbacks** run on the worker's driver thread (a greenlet under gevent): keep them short.
* **Ready before the first reply.** The worker processes start in the constructor and load
  their model while the caller goes on; ``on_ready(message)`` is called once when all have
  (or failed to), with how long it took (also ``stats()["ready_s"]``).

:func:`judge_saved_replies` judges replies saved after a run (``--save-replies DIR``).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import psutil

from voiceharness.errors import UsageError
from voiceharness.expectations import load_expectations
from voiceharness.listener import DEFAULT_METHOD, Heard, ReplyListener
from voiceharness.listener_worker import encode_request, read_response

__all__ = ["INDEX_COLUMNS", "LIVE_MAX_WAIT_S", "Judgement", "ListenerPool", "judge_saved_replies"]

INDEX_COLUMNS = ("turn_key", "utterance_id", "expected_intent", "request_text", "path")
# How long a worker may take to load its model and decode once before it counts as failed.
_START_TIMEOUT_S = 60.0
# The live judge's max_wait_s: a reply that waited this long in the queue (the workers starved of
# CPU) is not heard, so that its turn never waits for a verdict past the harness's patience.
LIVE_MAX_WAIT_S = 10.0
_STOP_TIMEOUT_S = 5.0
_CLOSED = object()  # queue sentinel: the driver thread stops
_HEARD_FIELDS = tuple(f.name for f in dataclasses.fields(Heard))


@dataclass(frozen=True)
class Judgement:
    """How one submitted reply was judged: ``heard``, or ``error`` when it could not be."""

    heard: Heard | None
    error: str | None
    queued_ms: float  # submit -> handed to a worker (wall clock)
    worker_pid: int | None


@dataclass
class _Job:
    job_id: int
    pcm: bytes
    sample_rate_hz: int
    request_text: str
    callback: Callable[[Judgement], None]
    submitted: float


def _pcm_bytes(pcm: np.ndarray | bytes) -> bytes:
    """PCM16 LE bytes from bytes or int16/float (-1..1) samples."""
    if isinstance(pcm, bytes | bytearray | memoryview):
        return bytes(pcm)
    array = np.asarray(pcm)
    if array.ndim > 1:
        array = array.mean(axis=1)
    if array.dtype.kind == "f":
        array = np.clip(array * 32768.0, -32768, 32767)
    return array.astype("<i2").tobytes()


def _write_all(stream, data: bytes) -> None:
    """Write every byte: an unbuffered pipe (and gevent's cooperative one) may take only part."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if written is None:  # a non-blocking pipe that is full: gevent waits, plain io does not
            raise OSError("listener worker pipe would block")
        view = view[written:]


class _Worker:
    """One worker process and the driver thread that feeds it."""

    def __init__(self, pool: ListenerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.process: subprocess.Popen | None = None
        self.pid: int | None = None
        self.restarts = 0
        self.alive = False
        self.ready = threading.Event()
        self.start_error: str | None = None
        self.cpu_s_dead = 0.0  # CPU of this slot's earlier (dead) processes
        self.cpu_s_last = 0.0  # last CPU reading of the current process
        self.ready_at = 0.0  # when the current process had loaded its model
        self.thread = threading.Thread(target=self._drive, name=f"listener-worker-{index}", daemon=True)

    def launch(self) -> None:
        """Start the worker process; it loads its model while the caller goes on (see _spawn)."""
        command = [sys.executable, "-m", "voiceharness.listener_worker", "--expectations", self.pool.expectations]
        command += ["--method", self.pool.method]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)

    def _spawn(self) -> bool:
        """Wait for the launched process's hello (its model loaded and warm); launch it first if needed."""
        if self.process is None:
            self.launch()
        process = self.process  # close() may reap it while this waits for the hello
        hello = read_response(process.stdout) if process is not None else None
        if not hello or not hello.get("ready"):
            exited = "stopped before it was ready" if self.pool._closed else f"exited with {process.wait()}"
            self.start_error = (hello or {}).get("error") or exited
            self._reap()
            return False
        self.pid = int(hello["pid"])
        self.cpu_s_last = 0.0
        self.alive = True
        self.ready_at = time.monotonic()
        return True

    def _cpu_s(self) -> float:
        with contextlib.suppress(psutil.Error, TypeError):
            times = psutil.Process(self.pid).cpu_times()
            self.cpu_s_last = times.user + times.system
        return self.cpu_s_last

    def cpu_s(self) -> float:
        return self.cpu_s_dead + (self._cpu_s() if self.alive else 0.0)

    def _reap(self) -> None:
        """Forget the current process (killing it if it still runs)."""
        self.alive = False
        self.cpu_s_dead += self.cpu_s_last
        self.cpu_s_last = 0.0
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            process.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(_STOP_TIMEOUT_S)
        with contextlib.suppress(OSError):
            process.stdout.close()

    def _drive(self) -> None:
        ok = self._spawn()
        self.ready.set()
        self.pool._worker_started(self)
        while ok or self.restarts < self.pool.max_restarts:
            if not ok:
                if self.pool._closed:
                    break
                self.restarts += 1
                self.pool._count("restarts")
                ok = self._spawn()
                continue
            job = self.pool._jobs.get()
            if job is _CLOSED:
                break
            queued_ms = (time.monotonic() - job.submitted) * 1000
            self.pool._note_taken()
            # Only the wait behind other replies counts, not the model's loading (replies wait for that).
            if time.monotonic() - max(job.submitted, self.ready_at) > self.pool.max_wait_s:
                # Its turn would wait for the verdict longer than a reply is worth: not heard
                # (as a skipped reply), so the worker catches up with the replies coming in now.
                self.pool._resolve(job, Judgement(None, None, queued_ms, None), stale=True)
                continue
            pid = self.pid
            try:
                _write_all(self.process.stdin, encode_request(job.job_id, job.pcm, job.sample_rate_hz, job.request_text))
                answer = read_response(self.process.stdout)
            except (OSError, ValueError):
                answer = None
            if answer is None:  # the worker died with this reply: resolve it, then restart
                self.start_error = f"listener worker {pid} died"
                self._cpu_s()
                self._reap()
                ok = False
                self.pool._resolve(job, Judgement(None, f"listener worker {pid} died while judging", queued_ms, pid))
                continue
            self._cpu_s()
            if answer.get("error"):
                self.pool._resolve(job, Judgement(None, answer["error"], queued_ms, pid))
            else:
                heard = Heard(**{name: answer[name] for name in _HEARD_FIELDS if name in answer})
                self.pool._resolve(job, Judgement(heard, None, queued_ms, pid))
        self._reap()
        self.pool._worker_gone(self)

    def stop(self) -> None:
        process = self.process
        if process is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # the worker ends at end of input


class ListenerPool:
    """Judges replies in ``workers`` listener processes; see the module docstring."""

    def __init__(
        self,
        expectations: str | Path,
        workers: int = 1,
        *,
        max_queue: int | None = None,
        sample_fraction: float = 1.0,
        method: str = DEFAULT_METHOD,
        max_restarts: int = 1,
        on_ready: Callable[[str], None] | None = None,
        max_wait_s: float = float("inf"),
    ) -> None:
        if workers < 1:
            raise UsageError(f"listener workers {workers}: give at least 1")
        if not 0.0 <= sample_fraction <= 1.0:
            raise UsageError(f"--judge-sample {sample_fraction}: give a fraction from 0 to 1 (1 = every reply)")
        load_expectations(expectations)  # a bad file fails here, with its message, not in a worker
        self.expectations = str(expectations)
        self.method = method
        self.max_restarts = max_restarts
        self.sample_fraction = sample_fraction
        self.max_queue = max_queue if max_queue is not None else 4 * workers
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._counts = {
            "submitted": 0, "judged": 0, "errors": 0, "skipped_behind": 0, "skipped_sampling": 0, "skipped_stale": 0,
            "restarts": 0, "decode_ms_total": 0.0,
        }
        self._waiting = 0  # replies in the queue, not yet taken by a worker
        self._queue_max = 0
        self._sample_credit = 0.0
        self._next_id = 0
        self._closed = False
        self._pending: set[int] = set()  # submitted and not yet resolved
        self._idle = threading.Condition(self._lock)
        self._on_ready = on_ready
        self.max_wait_s = max_wait_s
        self.ready_s: float | None = None  # how long the workers took to load their model (all of them)
        self._launched = time.monotonic()
        self._workers = [_Worker(self, i) for i in range(workers)]
        # Every process starts loading its model now, in parallel and whatever the caller does
        # next (a Locust run ramps its users up meanwhile); the driver threads wait for them.
        for worker in self._workers:
            worker.launch()
        for worker in self._workers:
            worker.thread.start()

    # -- for the driver threads -------------------------------------------------------------

    def _count(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def _note_taken(self) -> None:
        with self._lock:
            self._waiting -= 1

    def _resolve(self, job: _Job, judgement: Judgement, *, stale: bool = False) -> None:
        with self._lock:
            if stale:
                self._counts["skipped_stale"] += 1
            elif judgement.error is None:
                self._counts["judged"] += 1
                self._counts["decode_ms_total"] += judgement.heard.decode_ms
            else:
                self._counts["errors"] += 1
            self._pending.discard(job.job_id)
            self._idle.notify_all()
        try:
            job.callback(judgement)
        except Exception as error:  # noqa: BLE001 - a caller's bug must not stop the worker's driver
            print(f"listener pool: callback failed: {type(error).__name__}: {error}", file=sys.stderr)

    def _worker_started(self, worker: _Worker) -> None:
        """A first start ended (ready or failed): when all have, say how long loading took."""
        with self._lock:
            if self.ready_s is not None or not all(w.ready.is_set() for w in self._workers):
                return
            self.ready_s = time.monotonic() - self._launched
        alive = sum(1 for w in self._workers if w.alive)
        if alive == len(self._workers):
            message = (f"Reply judge ready: {alive} listener process(es) loaded the speech model ({self.method}) "
                       f"in {self.ready_s:.1f} s")
        else:
            errors = "; ".join(sorted({w.start_error or "?" for w in self._workers if not w.alive}))
            message = (f"Reply judge: {len(self._workers) - alive} of {len(self._workers)} listener process(es) "
                       f"failed to start ({errors}) after {self.ready_s:.1f} s")
        if self._on_ready is not None:
            try:
                self._on_ready(message)
            except Exception as error:  # noqa: BLE001 - a caller's bug must not stop the worker's driver
                print(f"listener pool: on_ready failed: {type(error).__name__}: {error}", file=sys.stderr)

    def _worker_gone(self, worker: _Worker) -> None:
        """A driver stopped: when none is left, fail the replies still queued."""
        if any(w.thread.is_alive() and w is not worker for w in self._workers):
            return
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not _CLOSED:
                self._note_taken()
                reason = "listener pool closed" if self._closed else f"no listener worker is running ({worker.start_error})"
                self._resolve(job, Judgement(None, reason, (time.monotonic() - job.submitted) * 1000, None))

    # -- the API ----------------------------------------------------------------------------

    def wait_ready(self, timeout_s: float = _START_TIMEOUT_S) -> bool:
        """Wait until every worker has started (or failed to); True when all are running."""
        deadline = time.monotonic() + timeout_s
        for worker in self._workers:
            if not worker.ready.wait(max(0.0, deadline - time.monotonic())):
                return False
        return all(w.alive for w in self._workers)

    def submit(
        self,
        pcm: np.ndarray | bytes,
        sample_rate_hz: int,
        request_text: str,
        callback: Callable[[Judgement], None],
    ) -> bool:
        """Queue one reply for judging; False when it is skipped (sampling, or the queue is full).

        Never blocks on the workers. ``callback(Judgement)`` is called exactly once for every
        accepted reply, from a driver thread.
        """
        with self._lock:
            if self._closed:
                raise UsageError("listener pool is closed: submit replies before close()")
            self._counts["submitted"] += 1
            self._sample_credit += self.sample_fraction
            if self._sample_credit < 1.0 - 1e-9:
                self._counts["skipped_sampling"] += 1
                return False
            if self._waiting >= self.max_queue:
                self._counts["skipped_behind"] += 1
                return False
            self._sample_credit -= 1.0
            self._next_id += 1
            job = _Job(self._next_id, _pcm_bytes(pcm), int(sample_rate_hz), request_text, callback, time.monotonic())
            self._waiting += 1
            self._queue_max = max(self._queue_max, self._waiting)
            self._pending.add(job.job_id)
        self._jobs.put(job)
        if not any(w.thread.is_alive() for w in self._workers):
            self._worker_gone(self._workers[0])
        return True

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until every accepted reply has been resolved; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._pending, timeout_s)

    def stats(self) -> dict:
        """Counts and costs so far: judged, errors, skips, queue, restarts, worker CPU seconds."""
        with self._lock:
            counts = dict(self._counts)
            queue_now, queue_max = self._waiting, self._queue_max
        judged = counts["judged"]
        return {
            "submitted": counts["submitted"],
            "judged": judged,
            "errors": counts["errors"],
            "skipped_behind": counts["skipped_behind"],
            "skipped_sampling": counts["skipped_sampling"],
            "skipped_stale": counts["skipped_stale"],
            "queue_now": queue_now,
            "queue_max": queue_max,
            "queue_limit": self.max_queue,
            "workers": len(self._workers),
            "workers_alive": sum(1 for w in self._workers if w.alive),
            "worker_pids": [w.pid for w in self._workers if w.alive],
            "restarts": counts["restarts"],
            "worker_cpu_s": round(sum(w.cpu_s() for w in self._workers), 3),
            "decode_ms_mean": round(counts["decode_ms_total"] / judged, 1) if judged else None,
            "ready_s": None if self.ready_s is None else round(self.ready_s, 2),
        }

    def close(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """Stop taking replies, finish the ones queued, stop the workers."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._workers:
            self._jobs.put(_CLOSED)
        for worker in self._workers:
            worker.thread.join(timeout_s)
        for worker in self._workers:
            worker.stop()
            if worker.thread.is_alive():  # still busy after the timeout: end it
                worker._reap()
        self._worker_gone(self._workers[0])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def judge_saved_replies(
    directory: str | Path, expectations: str | Path, *, method: str = DEFAULT_METHOD, workers: int = 1
) -> list[dict]:
    """Judge replies saved during a run (``--save-replies DIR``): every ``DIR/index*.csv`` (one per
    load-generator process; columns :data:`INDEX_COLUMNS`) and the WAVs they name.

    Returns one row per reply: the index columns plus ``heard_intent`` ("" when unjudged),
    ``transcript``, ``scores`` (JSON), ``decode_ms``, ``correct``, the verdict's ``score``,
    ``runner_up``, ``runner_up_score`` and ``expectations``, and ``error`` (a WAV that
    cannot be read, or a decode that failed, is an error row, not an exception). ``workers``
    listener processes decode side by side (1: in this process).
    """
    import soundfile

    directory = Path(directory)
    indexes = sorted(directory.glob("index*.csv"))
    if not indexes:
        raise UsageError(f"saved replies {directory / 'index.csv'}: no such file; give the directory --save-replies "
                         "wrote")
    entries: list[dict] = []
    for index in indexes:
        with index.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in INDEX_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise UsageError(f"saved replies {index}: missing column(s) {', '.join(missing)}; "
                                 f"the header must hold {','.join(INDEX_COLUMNS)}")
            entries.extend(reader)
    rows: list[dict] = []
    clips: list[tuple[dict, np.ndarray, int]] = []
    for entry in entries:
        row = {column: entry[column] for column in INDEX_COLUMNS}
        row.update(heard_intent="", transcript="", scores="{}", decode_ms="", correct="", error="", score="",
                   runner_up="", runner_up_score="", expectations="")
        rows.append(row)
        path = Path(entry["path"])
        path = path if path.is_absolute() else directory / path
        try:
            samples, rate_hz = soundfile.read(path, dtype="int16")
        except (OSError, RuntimeError, soundfile.LibsndfileError) as error:
            row["error"] = f"cannot read {path}: {error}"
            continue
        clips.append((row, samples, rate_hz))

    def record(row: dict, heard: Heard | None, error: str | None) -> None:
        if error:
            row["error"] = error
            return
        row.update(heard_intent=heard.intent or "", transcript=heard.transcript, scores=json.dumps(heard.scores),
                   decode_ms=round(heard.decode_ms, 1), correct=heard.intent == row["expected_intent"],
                   score=heard.score, runner_up=heard.runner_up, runner_up_score=heard.runner_up_score,
                   expectations=heard.expectations)

    if workers <= 1:
        listener = ReplyListener(expectations, method=method)
        for row, samples, rate_hz in clips:
            record(row, listener.hear(samples, rate_hz, request_text=row["request_text"]), None)
        return rows
    with ListenerPool(expectations, workers, max_queue=max(1, len(clips)), method=method) as pool:
        for row, samples, rate_hz in clips:
            pool.submit(samples, rate_hz, row["request_text"],
                        lambda judgement, row=row: record(row, judgement.heard, judgement.error))
        pool.drain()
    return rows
