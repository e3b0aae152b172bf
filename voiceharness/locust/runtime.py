"""One voice runtime per Locust environment: ``environment.voice``.

Everything the simulated users of one Locust :class:`~locust.env.Environment` share lives on
one :class:`VoiceRuntime`, as Locust keeps its runner, stats and parsed options on the
environment:

===============  ================================================================================
attribute        what it is
===============  ================================================================================
``config``       the run's options, resolved (:class:`~voiceharness.locust.options.VoiceRunConfig`)
``corpus``       the run's utterances and the basic scenario's "hello jarvis" ones
``pacer``        the real-time sender of every stream of this process (:mod:`.transport`)
``sink``         where turn records go: the turns file, the master, the Voice quality tab (:mod:`.records`)
``monitor``      CPU and memory samples of the load generator and a local gateway (:mod:`.resources`)
``run_status``   turns started vs recorded, ``PREFIX_run.json`` (:mod:`.run_status`)
``collector``    when the garbage collector may pause this process (:mod:`.collector`)
``judge``        the reply judge's processes and the reply saver (:mod:`.judging`)
``logbook``      the guide-style log (:class:`~voiceharness.logbook.Logbook`)
``calls``        the open model's calls: their clock, those in progress, ``PREFIX_calls.csv`` (:mod:`.calls`)
===============  ================================================================================

It is made in one of two ways:

* by Locust's command line: importing this module (which every locustfile that uses
  :class:`~voiceharness.locust.VoiceUser` does) adds the harness's options to Locust's parser
  and, at Locust's ``init`` event, builds the runtime from the parsed options;
* by hand, when Locust runs as a library::

      from locust.env import Environment
      from voiceharness.locust import VoiceUser, attach

      environment = Environment(user_classes=[MyUser])
      runner = environment.create_local_runner()
      attach(environment, host="ws://127.0.0.1:7090", utterances="kind:clean", csv_prefix="results/run")
      runner.start(5, spawn_rate=5)
      ...
      runner.quit(); environment.voice.shutdown()

:meth:`VoiceRuntime.install` registers the runtime's hooks on the environment's events, all of
them in one place; nothing else in the harness keeps module-level state. The two listeners this
module adds when it is imported (the options, and building the runtime at ``init``) are the
ones Locust's command line needs before any environment exists.
"""

from __future__ import annotations

import gc
import itertools
import logging
import os
import random
from typing import Any

import gevent
from locust import events
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner, WorkerRunner

from voiceharness import diagnoses
from voiceharness.errors import HarnessError, UsageError
from voiceharness.locust import locust_csv, metrics, records, resources, run_status
from voiceharness.locust import options as voice_options
from voiceharness.locust.collector import Collector
from voiceharness.locust.judging import ReplyJudge
from voiceharness.locust.transport import Pacer
from voiceharness.logbook import Logbook

__all__ = ["RunCorpus", "VoiceRuntime", "attach", "runtime_of"]

# gevent's own variable for tracking the greenlet tree: if set, the harness leaves the setting alone.
TRACK_GREENLET_TREE_ENV = "GEVENT_TRACK_GREENLET_TREE"
log = logging.getLogger("voice")

BASIC_UTTERANCE_TEXT = "hello jarvis"


class RunCorpus:
    """The run's utterances (``--utterances`` of the bundled corpus or of ``--corpus-manifest``)
    and those of the basic scenario ("hello jarvis", synthesised when a corpus of one's own lacks it)."""

    def __init__(self, config: voice_options.VoiceRunConfig) -> None:
        from audio_corpus import bundled_corpus, load_corpus

        # The bundled corpus leaves its noisy copies out by default; a manifest of one's own is used whole.
        default_select = None if config.corpus_manifest else "kind:clean,kind:unknown"
        select = config.utterances or default_select
        if config.corpus_manifest:
            self.utterances = load_corpus(config.corpus_manifest, select=select)
        else:
            self.utterances = bundled_corpus().select(select)
        self.key = (config.corpus_manifest, config.utterances)
        basic = [u for u in self.utterances if u.text.lower() == BASIC_UTTERANCE_TEXT]
        if not basic:
            from audio_corpus import text_utterance

            basic = [text_utterance(BASIC_UTTERANCE_TEXT, expected_intent="GREETING")]
        self.basic = basic
        self._shuffled: tuple | None = None

    def shuffled(self, rng: random.Random) -> tuple:
        """The utterances in one random order, made once per process and shared by every user
        (each starts it at a place of its own): no per-user copy of the corpus."""
        if self._shuffled is None:
            order = list(self.utterances)
            rng.shuffle(order)
            self._shuffled = tuple(order)
        return self._shuffled

    def __iter__(self):
        return iter(self.utterances)

    def __len__(self) -> int:
        return len(self.utterances)


class VoiceRuntime:
    """What the users of one Locust environment share (see the module docstring)."""

    def __init__(self, environment, config: voice_options.VoiceRunConfig, *, csv_prefix: str | None = None,
                 metrics_options: metrics.MetricsOptions | None = None) -> None:
        self.environment = environment
        self.config = config
        self.csv_prefix = csv_prefix
        self.worker_name = records.worker_name()
        runner = environment.runner
        self.is_master = isinstance(runner, MasterRunner)
        self.is_worker = isinstance(runner, WorkerRunner)
        export_path = f"{csv_prefix or 'voice'}_log.{config.log_export}" if config.log_export else None
        self.logbook = Logbook(log, export_path=export_path, export_format=config.log_export or "txt",
                               redact=config.redact)
        self.user_numbers = itertools.count()
        # The users' random source (think times, corpus order, backoff jitter): one per process,
        # not one per user (a Mersenne Twister's state is 2.5 KB; at 2,000 users, 5 MB).
        self.rng = random.Random()
        self.collector = Collector()
        self.pacer = Pacer(collector=self.collector)
        self.corpus: RunCorpus | None = None
        self.judge = ReplyJudge(config, self.logbook, self.worker_name)
        self.sink = records.TurnSink(environment, config.turns_file)
        self.monitor = resources.ResourceMonitor(
            environment, config.settings, self.worker_name,
            f"{csv_prefix}_resources.csv" if csv_prefix else None,
            lateness=self.pacer.stats, judge_cpu=self.judge.cpu_seconds)
        self.run_status = run_status.RunStatus(
            environment, path=run_status.status_path(csv_prefix, config.turns_file),
            records=lambda: self.sink.received, lateness=self.pacer.stats.summary,
            worker_name=self.worker_name, target=config.settings.url, dialect=config.dialect.name)
        from voiceharness.locust.calls import CallBook  # it imports the client, which imports this module

        self.calls = CallBook(environment, config.calls_file, self.worker_name)
        self.metrics_options = metrics_options or metrics.MetricsOptions()
        self.metrics_server: metrics.MetricsServer | None = None
        self._explained: set[str] = set()
        self._installed = False
        self._shut_down = False

    # -- construction
    @classmethod
    def from_parsed_options(cls, environment) -> VoiceRuntime:
        """The runtime of a run started from Locust's command line (raises HarnessError on a bad option)."""
        options = environment.parsed_options
        config = voice_options.resolve(options)
        return cls(environment, config, csv_prefix=getattr(options, "csv_prefix", None),
                   metrics_options=metrics.MetricsOptions.from_options(options))

    @classmethod
    def attach(cls, environment, config: voice_options.VoiceRunConfig | None = None, *,
               csv_prefix: str | None = None, **arguments: Any) -> VoiceRuntime:
        """Build, install and set ``environment.voice`` when Locust runs as a library.

        ``arguments`` are the harness's options by their Python names (``host``, ``dialect``,
        ``utterances``, ``think_time_ms``..., as ``voice-options`` lists them); a ready ``config``
        replaces them.
        """
        if getattr(environment, "voice", None) is not None:
            raise UsageError("this Locust environment already has a voice runtime (environment.voice)")
        if config is None:
            arguments.setdefault("host", environment.host or "")
            config = voice_options.config_from_arguments(csv_prefix=csv_prefix, **arguments)
        runtime = cls(environment, config, csv_prefix=csv_prefix)
        runtime.install()
        return runtime

    # -- the hooks, all of them
    def install(self) -> None:
        """Register this runtime's hooks on its environment's events and set ``environment.voice``."""
        if self._installed:
            return
        self._installed = True
        environment = self.environment
        environment.voice = self
        hooks = environment.events
        runner = environment.runner
        if TRACK_GREENLET_TREE_ENV not in os.environ:
            # gevent records, for every greenlet spawned, who spawned it and the spawner's last ten
            # Python frames (``spawning_stack``: ~0.9 KB a user greenlet, kept as long as the user
            # lives). Nothing in a run reads them; a run that wants them sets the variable.
            gevent.config.track_greenlet_tree = False
        if not self.is_master:
            # Load and validate the corpus before any user starts: a bad file fails the run now.
            self.corpus = RunCorpus(self.config)
            self.pacer.preframe_speech(self.corpus, self.config.settings.chunk_samples)
            # Everything loaded so far (Locust, the corpus, the pre-framed audio) lives for the whole
            # run: keep it out of the collector's full passes, which paused 1,000 users for 26-46 ms.
            gc.collect()
            gc.freeze()
            if self.judge.will_listen():
                self.judge.start()  # replies will be heard: load the model now, not at the first reply
            self.judge.start_saving()
        self.calls.install(hooks, runner)
        self.sink.install(hooks, runner, environment.web_ui, extra_rows=lambda: self.calls.rows() + self.monitor.rows(),
                          headline_inputs=lambda: (self.monitor.worst_lateness_p99_ms(),
                                                   len(runner.exceptions) if runner is not None else 0))
        self.monitor.install(runner)
        self.run_status.install(hooks, runner)
        locust_prefix = getattr(environment.parsed_options, "csv_prefix", None)  # Locust's own --csv writer
        if locust_prefix and not self.is_worker:
            locust_csv.install(hooks, f"{locust_prefix}_stats.csv")  # a last write before Locust closes it
        if self.metrics_options.port and not self.is_worker:
            self.metrics_server = metrics.serve(environment, self.metrics_options)
            self.sink.add_listener(self.metrics_server.metrics.observe_turn)
            self.calls.add_listener(self.metrics_server.metrics.observe_call)
            self.monitor.add_listener(self.metrics_server.metrics.observe_sample)
        hooks.spawning_complete.add_listener(self._on_spawning_complete)
        hooks.test_start.add_listener(self._on_test_start)
        hooks.test_stop.add_listener(self._on_test_stop)
        hooks.reset_stats.add_listener(self._on_reset_stats)
        hooks.quitting.add_listener(self._on_quitting)
        if self.is_worker and runner.worker_state in (STATE_SPAWNING, STATE_RUNNING):
            # A worker registers with its master before Locust fires init; a master that has its
            # workers already sends the first spawn, whose test_start (with the master's --host)
            # can fire while init's listeners run, before this one listened. Take it now.
            self._on_test_start(environment)
        self.logbook.info(f"Voice harness: {self.config.describe()}", echo=True)
        # gevent timers count from the loop's cached clock, last read before the imports and the
        # corpus load above: without a refresh, Locust's --run-time timer (armed next) fires early
        # by the time they took (seconds on a busy machine).
        gevent.get_hub().loop.update_now()

    def _on_spawning_complete(self, **_kwargs) -> None:
        self.collector.hold()  # from now on the collector pauses only on the harness's schedule

    def _on_test_start(self, environment, **_kwargs) -> None:
        """Pick up options changed in the web UI's start form (pace, dialect, utterances...)."""
        options = environment.parsed_options
        if options is None or self.is_master:
            return
        if environment.host:  # a worker gets the master's --host here, never in options.host
            options.host = environment.host
        try:
            config = voice_options.resolve(options)
            if (config.corpus_manifest, config.utterances) != (self.corpus.key if self.corpus else None):
                self.corpus = RunCorpus(config)
            self.config = config
            self.judge.config = config
        except HarnessError as error:
            # The run is already starting: keep the previous settings and say why.
            log.error("options from the start form not applied: %s", error)

    def _on_test_stop(self, **_kwargs) -> None:
        self.collector.release()
        self.calls.flush()  # a worker's last call records go before it tells the master its turns are sent
        self.sink.flush()
        if self.is_worker:
            self.run_status.send_to_master(final=True)

    def _on_reset_stats(self, **_kwargs) -> None:
        self.sink.live.reset()

    def _on_quitting(self, environment, **_kwargs) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """The end of the run, in this order: stop the users (their turns in progress are recorded
        as ``run_stopped``), write the run status, let the metrics endpoint serve its last scrape,
        then close the files and the judge. Locust calls it at ``quitting``; a library user calls
        it after ``runner.quit()``. Idempotent."""
        if self._shut_down:
            return
        self._shut_down = True
        runner = self.environment.runner
        # Still running at quitting = Ctrl-C or SIGTERM (a --run-time end stops the runner first).
        cut_short = runner is not None and runner.state in (STATE_RUNNING, STATE_SPAWNING)
        if runner is not None and not self.is_worker:
            runner.stop()  # users record their turns in progress as run_stopped, now
            if self.is_master:
                gevent.sleep(0.5)  # the workers' last records and counts are on their way
        self.run_status.finish(cut_short=cut_short)
        if self.metrics_server is not None:
            self.metrics_server.linger_and_stop()
        self.pacer.report(self.logbook.logger)
        self.monitor.close()
        self.calls.close()
        self.sink.flush()
        self.sink.close()
        self.judge.close()
        self.collector.close()
        self.logbook.close()

    # -- what users ask of it
    def utterance(self, what: Any, *, voice: str | None = None, rate_wpm: int | None = None):
        """The utterance ``say(what)`` means: an utterance, a corpus id, a WAV path or plain text."""
        from audio_corpus import Utterance

        if isinstance(what, Utterance) and voice is None and rate_wpm is None:
            return what  # the scenarios' common case, once per turn: no lookup
        from audio_corpus import resolve_utterance

        extra = {k: v for k, v in (("voice", voice), ("rate_wpm", rate_wpm)) if v is not None}
        # Plain text is synthesised in a child process, so that neither the resampler's import
        # (0.5-2 s holding the GIL, every user stalled) nor its 40-60 MB land in the load generator.
        return resolve_utterance(what, corpus=self.corpus.utterances if self.corpus else None,
                                 synthesise_in_child=True, **extra)

    def explain_once(self, code: str, detail: str) -> str:
        """The full causes-and-fixes text the first time a diagnosis is seen in this process."""
        if code not in self._explained:
            self._explained.add(code)
            return diagnoses.explain(code, detail)
        diagnosis = diagnoses.DIAGNOSES.get(code)
        headline = f"{diagnosis.headline}: {diagnosis.finding}" if diagnosis else code
        return f"{headline} ({detail})"


def runtime_of(environment) -> VoiceRuntime:
    """``environment.voice``, or a UsageError that says how to make one."""
    runtime = getattr(environment, "voice", None)
    if runtime is None:
        raise UsageError("this Locust environment has no voice runtime: when Locust runs as a library, call "
                         "voiceharness.locust.attach(environment, host=...) before starting users "
                         "(Locust's command line makes it from its options)")
    return runtime


attach = VoiceRuntime.attach


# -- the two listeners Locust's command line needs, added when this module is imported


@events.init_command_line_parser.add_listener
def _add_options(parser, **_kwargs) -> None:
    """The harness's options in Locust's parser (and its web UI's start form). Locust builds the
    parser once per run, after importing the locustfile and before it forks its ``--processes``:
    the bundled corpus is loaded here, so every forked worker shares its pages."""
    voice_options.add_voice_options(parser)
    metrics.add_metrics_options(parser)
    from audio_corpus import bundled_corpus

    bundled_corpus()


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:
    """Build ``environment.voice`` from Locust's parsed options (once per process, after the fork)."""
    options = environment.parsed_options
    if options is None or not hasattr(options, "dialect") or getattr(environment, "voice", None) is not None:
        return  # Locust as a library (attach() does it), or the runtime is already there
    try:
        runtime = VoiceRuntime.from_parsed_options(environment)
        runtime.install()
    except HarnessError as error:
        log.error("%s", error)
        environment.process_exit_code = 2
        if environment.runner is not None:
            environment.runner.quit()
        raise SystemExit(2) from None
    _drop_users_without_tasks(environment)
    if not options.host and not options.voice_config:
        runtime.logbook.warning(f"No --host given: using the {options.preset} preset's {runtime.config.settings.url}")


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
