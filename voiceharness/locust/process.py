"""What every simulated user of one Locust process shares, and the Locust hooks that set it up.

One :data:`PROCESS` per Locust process (a standalone run, the master, each worker):

* the run's configuration (:mod:`voiceharness.locust.options`), resolved at ``init`` and again
  at ``test_start`` for what the web UI's start form changed;
* the corpus, loaded and validated before any user starts (a bad file fails the run at once),
  and what ``say()`` resolves its argument with (an utterance, an id, a WAV path or plain text);
* the guide-style log (:class:`~voiceharness.logbook.Logbook`), with each diagnosis explained
  in full the first time it is seen;
* the reply listener's processes (:mod:`voiceharness.listener_pool`), started when a reply
  must be judged by ear, and the reply saver (``--save-replies``);
* the records, resources and run-status plumbing (:mod:`.records`, :mod:`.resources`,
  :mod:`.run_status`).
"""

from __future__ import annotations

import csv
import gc
import itertools
import logging
import threading
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import numpy as np
from locust import events
from locust.runners import MasterRunner

from voiceharness import diagnoses, guide
from voiceharness.errors import HarnessError
from voiceharness.locust import locust_csv, records, resources, run_status
from voiceharness.locust import metrics as _metrics  # noqa: F401 (--voice-metrics-port: its own Locust hooks)
from voiceharness.locust import options as voice_options
from voiceharness.locust.collector import COLLECTOR
from voiceharness.locust.pacer import PACER
from voiceharness.logbook import Logbook

log = logging.getLogger("voice")

BASIC_UTTERANCE_TEXT = "hello jarvis"


class JudgeFailed(HarnessError):
    """The reply judge's process could not hear a reply (it died, or never answered)."""

# A reply the listener has not heard after this long is left unjudged (its process is stuck).
LISTEN_TIMEOUT_S = 30.0


class VoiceProcess:
    """The state shared by the users of this process (see the module docstring)."""

    def __init__(self) -> None:
        self.config: voice_options.VoiceRunConfig | None = None
        self.corpus = None
        self.basic: list = []
        self.logbook = Logbook(log)
        self.explained: set[str] = set()
        self.user_numbers = itertools.count()
        self.worker_name = records.worker_name()
        self.listener_pool = None  # voiceharness.listener_pool.ListenerPool, started when first needed
        self.listen_lock = threading.Lock()
        self.saver: ReplySaver | None = None
        self.unjudged_behind = 0  # replies the listener could not take in time
        self.bundled = None  # the bundled corpus, loaded at import (see preload)

    # -- the corpus and what say() accepts
    def preload(self) -> None:
        """Load the bundled corpus and frame its audio before Locust forks its ``--processes``
        workers: what is loaded here is loaded once and shared by them all (copy-on-write
        pages), and a worker's ``init`` stays short enough for its heartbeats to the master (a
        worker that blocked 11 s loading was declared missing and the run stopped)."""
        from audio_corpus import load_corpus

        self.bundled = load_corpus()
        PACER.preframe_speech(self.bundled, guide.CHUNK_SAMPLES)

    def load_corpus(self, config: voice_options.VoiceRunConfig) -> None:
        """Load the run's utterances, and the "hello jarvis" ones of the basic scenario."""
        from audio_corpus import load_corpus

        # The bundled corpus leaves its noisy copies out by default; a manifest of one's own is used whole.
        default_select = None if config.corpus_manifest else "kind:clean,kind:unknown"
        if config.corpus_manifest or self.bundled is None:
            corpus = load_corpus(config.corpus_manifest or None, select=config.utterances or default_select)
        else:
            corpus = self.bundled.select(config.utterances or default_select)
        basic = [u for u in corpus if u.text.lower() == BASIC_UTTERANCE_TEXT]
        self.corpus = corpus
        if not basic:
            # A corpus of one's own without "hello jarvis": the basic scenario says it anyway.
            from audio_corpus import text_utterance

            basic = [text_utterance(BASIC_UTTERANCE_TEXT, expected_intent="GREETING")]
        self.basic = basic

    def utterance(self, what: Any, *, voice: str | None = None, rate_wpm: int | None = None):
        """The utterance ``say(what)`` means: an utterance, a corpus id, a WAV path or plain text."""
        from audio_corpus import Utterance

        if isinstance(what, Utterance) and voice is None and rate_wpm is None:
            return what  # the scenarios' common case, once per turn: no lookup
        from audio_corpus import resolve_utterance

        extra = {k: v for k, v in (("voice", voice), ("rate_wpm", rate_wpm)) if v is not None}
        return resolve_utterance(what, corpus=self.corpus, **extra)

    # -- explaining diagnoses
    def explain_once(self, code: str, detail: str) -> str:
        """The full causes-and-fixes text the first time a diagnosis is seen in this process."""
        if code not in self.explained:
            self.explained.add(code)
            return diagnoses.explain(code, detail)
        diagnosis = diagnoses.DIAGNOSES.get(code)
        headline = f"{diagnosis.headline}: {diagnosis.finding}" if diagnosis else code
        return f"{headline} ({detail})"

    # -- hearing replies (the judge by ear)
    def listen(self, samples: np.ndarray, sample_rate_hz: int, request_text: str):
        """Hear one reply in the listener's process; None when this reply is not heard (outside
        ``--judge-sample``, or the listener is behind). A listener that failed on it raises
        (the turn is then a harness_error: the harness could not judge it, the gateway did no wrong)."""
        config = self.config
        if config is None or config.judge_sample <= 0.0:
            return None
        pool = self.listener_pool or self.start_listener()
        result = gevent.event.AsyncResult()
        if not pool.submit(samples, sample_rate_hz, request_text, result.set):
            stats = pool.stats()
            behind = stats.get("skipped_behind", 0)
            if behind and behind in (1, 10, 100, 1000, 10000) and behind != self.unjudged_behind:
                self.unjudged_behind = behind
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

    def start_listener(self):
        """Start the reply judge's processes (once per process; they load the speech model)."""
        with self.listen_lock:
            if self.listener_pool is None:
                from voiceharness.listener_pool import ListenerPool

                config = self.config
                assert config is not None
                self.listener_pool = ListenerPool(config.expectations, workers=config.judge_workers,
                                                  sample_fraction=config.judge_sample, method=config.judge_method)
                self.logbook.info(f"Reply judge: {config.judge_workers} process(es) hearing replies against the "
                                  f"{config.expectations} expectations, {config.judge_sample:.0%} of replies")
        return self.listener_pool

    def judge_cpu_seconds(self) -> float | None:
        """CPU time the reply judge's processes used so far (None when none ran)."""
        if self.listener_pool is None:
            return None
        return float(self.listener_pool.stats().get("worker_cpu_s", 0.0))

    def close(self) -> None:
        if self.listener_pool is not None:
            stats = self.listener_pool.stats()
            self.logbook.info(f"Reply judge: {stats}", echo=True)
            self.listener_pool.close()
            self.listener_pool = None
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


PROCESS = VoiceProcess()


@events.init_command_line_parser.add_listener
def _before_the_fork(parser, **_kwargs) -> None:
    """Locust builds its parser once per run, after importing the locustfile and before it forks
    its ``--processes``: load what every worker shares here (not at import: a tool that only
    imports the package pays nothing)."""
    if PROCESS.bundled is None:
        PROCESS.preload()
        # say("plain text") synthesises on first use: in a child process, so that neither the
        # resampler's import (0.5-2 s holding the GIL, every user stalled) nor its 40-60 MB
        # land in the load generator.
        from audio_corpus import speech_cache

        speech_cache.SYNTHESISE_IN_A_CHILD = True


def _fail_run(environment, error: HarnessError) -> None:
    log.error("%s", error)
    environment.process_exit_code = 2
    if environment.runner is not None:
        environment.runner.quit()
    raise SystemExit(2) from None


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is None:  # imported by a tool, not run by Locust
        return
    # After Locust's --processes fork: this process's own name.
    PROCESS.worker_name = records.worker_name()
    try:
        config = voice_options.resolve(options)
        PROCESS.config = config
        if not isinstance(environment.runner, MasterRunner):
            # Load and validate the corpus before any user starts: a bad file fails the run now.
            PROCESS.load_corpus(config)
            # Everything loaded so far (Locust, the corpus, the pre-framed audio) lives for the whole
            # run: keep it out of the collector's full passes, which paused 1,000 users for 26-46 ms.
            gc.collect()
            gc.freeze()
            # Once the users run, the collector pauses only on the harness's schedule (collector.py).
            environment.events.spawning_complete.add_listener(lambda **_kw: COLLECTOR.hold())
            environment.events.test_stop.add_listener(lambda **_kw: COLLECTOR.release())
            if config.judge_sample > 0 and (config.judge_replies or config.expectations == "smartjarvis"
                                            or config.reply_format.value in ("wav", "pcm")):
                PROCESS.start_listener()  # replies will be heard: load the model now, not at the first reply
            if config.save_replies:
                PROCESS.saver = ReplySaver(config.save_replies, config.save_replies_max_bytes,
                                           PROCESS.worker_name, PROCESS.logbook)
    except HarnessError as error:
        _fail_run(environment, error)
    _drop_users_without_tasks(environment)
    prefix = getattr(options, "csv_prefix", None)
    export_path = f"{prefix or 'voice'}_log.{config.log_export}" if config.log_export else None
    PROCESS.logbook = Logbook(log, export_path=export_path, export_format=config.log_export or "txt",
                              redact=config.redact)
    monitor = resources.install(environment, config.settings, PROCESS.worker_name,
                                f"{prefix}_resources.csv" if prefix else None, judge_cpu=PROCESS.judge_cpu_seconds)
    turn_sink = records.install(environment, config.turns_file, monitor.rows)
    run_status.install(environment, csv_prefix=prefix, turns_file=config.turns_file,
                       records=lambda: turn_sink.received, lateness=PACER.stats.summary,
                       worker_name=PROCESS.worker_name, target=config.settings.url, dialect=config.dialect.name)
    locust_csv.install(environment)  # Locust's --csv files: a last write before Locust closes them (see there)
    if not options.host and not options.voice_config:
        PROCESS.logbook.warning(f"No --host given: using the {options.preset} preset's {config.settings.url}")
    PROCESS.logbook.info(f"Voice harness: {config.settings.describe()}, dialect {config.dialect.name}, pace "
                         f"{config.pace}, end marker {'on' if config.end_marker else 'off'}, "
                         f"{config.trailing_silence_ms} ms trailing silence, mic {config.mic_during_reply} "
                         "during the reply", echo=True)
    # gevent timers count from the loop's cached clock, last read before the imports and the
    # corpus load above: without a refresh, Locust's --run-time timer (armed next) fires early
    # by the time they took (seconds on a busy machine).
    gevent.get_hub().loop.update_now()


def _drop_users_without_tasks(environment) -> None:
    """With ``--tags``, a scenario class whose tasks are all filtered out would fail at spawn
    ("No tasks defined"): run only the classes that keep a task. Decided before the first
    start (the master's dispatcher takes its classes then) with the rule Locust filters by at
    start: a task passes when it has one of the tags (``@tag`` sets ``locust_tag_set``) and none
    of the excluded ones; a nested TaskSet is kept (Locust filters inside it)."""
    options = environment.parsed_options
    tags = set(options.tags) if getattr(options, "tags", None) else None
    exclude_tags = set(options.exclude_tags) if getattr(options, "exclude_tags", None) else None
    if tags is None and exclude_tags is None:
        return

    def passes(task) -> bool:
        if hasattr(task, "tasks"):
            return True
        task_tags = getattr(task, "locust_tag_set", set())
        return (tags is None or bool(task_tags & tags)) and not (exclude_tags and task_tags & exclude_tags)

    runnable = [user_class for user_class in environment.user_classes if any(map(passes, user_class.tasks))]
    if runnable and len(runnable) < len(environment.user_classes):
        environment.user_classes[:] = runnable


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:
    """Pick up options changed in the web UI's start form (pace, dialect, utterances...)."""
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, MasterRunner) or PROCESS.config is None:
        return
    if environment.host:  # a worker gets the master's --host here, never in options.host
        options.host = environment.host
    try:
        config = voice_options.resolve(options)
        if (config.utterances, config.corpus_manifest) != (PROCESS.config.utterances, PROCESS.config.corpus_manifest):
            PROCESS.load_corpus(config)
        PROCESS.config = config
    except HarnessError as error:
        # The run is already starting: keep the previous settings and say why.
        log.error("options from the start form not applied: %s", error)


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs) -> None:
    PROCESS.close()

