"""The reply judge of one Locust process: hearing replies by ear, and saving them for later.

:class:`ReplyJudge` is the runtime's (``environment.voice.judge``):

* :meth:`ReplyJudge.listen` hears one reply's audio in the listener's worker processes
  (:mod:`voiceharness.listener_pool`: speech recognition never runs on the load generator's
  event loop) and returns what was heard, or None when this reply is not heard (outside
  ``--judge-sample``, or the judge is behind and the load generator does not wait for it);
* the processes start, and load their model, when the run starts if replies will be heard
  (:meth:`ReplyJudge.will_listen`), else at the first reply that needs hearing;
* ``--save-replies DIR`` keeps each reply's audio as a WAV file plus an index
  (:class:`ReplySaver`), for ``python -m analysis PREFIX --judge-replies DIR`` after the run.
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import gevent
import gevent.event
import numpy as np

from voiceharness.errors import HarnessError
from voiceharness.logbook import Logbook

__all__ = ["JudgeFailed", "ReplyJudge", "ReplySaver"]

# A reply the listener has not heard after this long is left unjudged (its process is stuck).
LISTEN_TIMEOUT_S = 30.0


class JudgeFailed(HarnessError):
    """The reply judge's process could not hear a reply (it died, or never answered)."""


class ReplyJudge:
    """The listener pool and the reply saver of one process (see the module docstring)."""

    def __init__(self, config, logbook: Logbook, worker_name: str) -> None:
        self.config = config
        self.logbook = logbook
        self.worker_name = worker_name
        self.pool = None  # voiceharness.listener_pool.ListenerPool, started when first needed
        self._lock = threading.Lock()
        self._unjudged_behind = 0  # replies the listener could not take in time, last reported
        self.saver: ReplySaver | None = None

    def start_saving(self) -> None:
        """``--save-replies DIR``: open this process's index (a process that runs users calls it once)."""
        config = self.config
        if config.save_replies and self.saver is None:
            self.saver = ReplySaver(config.save_replies, config.save_replies_max_bytes, self.worker_name,
                                    self.logbook)

    def will_listen(self) -> bool:
        """Will this run hear replies by ear? (Judging on, and replies that may come without metadata.)"""
        config = self.config
        return config.judge_sample > 0 and (config.judge_replies or config.expectations == "smartjarvis"
                                            or config.reply_format.value in ("wav", "pcm"))

    def start(self):
        """Start the reply judge's processes (once; they load the speech model)."""
        with self._lock:
            if self.pool is None:
                from voiceharness.listener_pool import LIVE_MAX_WAIT_S, ListenerPool

                config = self.config
                self.pool = ListenerPool(config.expectations, workers=config.judge_workers,
                                         sample_fraction=config.judge_sample, method=config.judge_method,
                                         on_ready=lambda message: self.logbook.info(message, echo=True),
                                         max_wait_s=LIVE_MAX_WAIT_S)
                self.logbook.info(f"Reply judge: {config.judge_workers} process(es) hearing replies against the "
                                  f"{config.expectations} expectations, {config.judge_sample:.0%} of replies")
        return self.pool

    def listen(self, samples: np.ndarray, sample_rate_hz: int, request_text: str):
        """Hear one reply; None when it is not heard. A listener that failed on it raises
        :class:`JudgeFailed` (the turn is then a harness_error: the gateway did no wrong)."""
        if self.config.judge_sample <= 0.0:
            return None
        pool = self.pool or self.start()
        result = gevent.event.AsyncResult()
        if not pool.submit(samples, sample_rate_hz, request_text, result.set):
            behind = pool.stats().get("skipped_behind", 0)
            if behind and behind in (1, 10, 100, 1000, 10000) and behind != self._unjudged_behind:
                self._unjudged_behind = behind
                self.logbook.warning(f"The reply judge is behind: {behind} replies left unjudged so far "
                                     "(raise --judge-workers, lower --judge-sample, or judge saved replies after the run)")
            return None
        try:
            judgement = result.get(timeout=LISTEN_TIMEOUT_S)
        except gevent.Timeout:
            raise JudgeFailed(f"no answer from the reply judge in {LISTEN_TIMEOUT_S:.0f} s") from None
        if judgement.error:
            raise JudgeFailed(f"the reply judge failed on this reply: {judgement.error}")
        return judgement.heard

    def cpu_seconds(self) -> float | None:
        """CPU time the reply judge's processes used so far (None when none ran)."""
        if self.pool is None:
            return None
        return float(self.pool.stats().get("worker_cpu_s", 0.0))

    def save(self, turn_key: str, record, request_text: str, samples: np.ndarray, sample_rate_hz: int) -> None:
        if self.saver is not None:
            self.saver.save(turn_key, record, request_text, samples, sample_rate_hz)

    def close(self) -> None:
        if self.pool is not None:
            stats = self.pool.stats()
            self.logbook.info(f"Reply judge: {stats}", echo=True)
            self.pool.close()
            self.pool = None
        if self.saver is not None:
            self.saver.close()


class ReplySaver:
    """``--save-replies DIR``: each reply's audio as a WAV file plus ``index.csv``, up to a byte cap."""

    COLUMNS = ("turn_key", "utterance_id", "expected_intent", "request_text", "path")

    def __init__(self, directory: str, max_bytes: int, worker: str, logbook: Logbook) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.written_bytes = 0
        self.logbook = logbook
        self.full = False
        index = self.directory / f"index-{worker.replace(':', '-')}.csv"
        self._file = open(index, "w", newline="", encoding="utf-8")  # noqa: SIM115 (open for the whole run)
        self._writer = csv.writer(self._file)
        self._writer.writerow(self.COLUMNS)
        self._prefix = worker.replace(":", "-")

    def save(self, turn_key: str, record, request_text: str, samples: np.ndarray, sample_rate_hz: int) -> None:
        import soundfile

        if self.full or not len(samples) or not sample_rate_hz:
            return
        size = 2 * len(samples) + 44
        if self.written_bytes + size > self.max_bytes:
            self.full = True
            self.logbook.warning(f"--save-replies: {self.written_bytes / 2**20:.0f} MB saved, the cap; "
                                 "later replies are not saved (raise --save-replies-max-mb)")
            return
        name = f"{self._prefix}-{turn_key.replace(':', '-')}.wav"
        soundfile.write(self.directory / name, samples, sample_rate_hz, subtype="PCM_16")
        self.written_bytes += size
        self._writer.writerow([turn_key, record.utterance_id, record.expected_intent, request_text, name])
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
