"""The usage guide's four test scenarios, and the whole corpus, as Locust users.

Each is a small user class written on the public API (``self.client.say(...)``), selectable
by class name on Locust's command line or by its tag::

    locust -f locustfiles/voice.py BasicUser StabilityUser ...
    locust -f locustfiles/voice.py --tags basic stability ...

Without either, every class runs, weighted: the corpus 4, each scenario 1.

==================  ========  ==============================================================
class               tag       what a user does
==================  ========  ==============================================================
CorpusUser          corpus    the whole corpus, round-robin from a random start
BasicUser           basic     says "hello jarvis", expects GREETING and reply audio
StabilityUser       stability 10 consecutive commands on one connection (think time between),
                              then reports its reconnections and ping
RecoveryUser        recovery  short turns with a short think time, watching its connection: an
                              outage is noticed at once, reconnected with the guide's backoff,
                              and its time to recover reported (Locust's ``recovery`` row)
PerformanceUser     performance fast-paced commands; CPU and memory of the load generator (and
                              of a local gateway) are sampled in ``_resources.csv``
==================  ========  ==============================================================
"""

from __future__ import annotations

from locust import tag, task

from voiceharness.locust.user import VoiceUser

STABILITY_TURNS = 10  # the guide's stability scenario: 10 consecutive commands
RECOVERY_THINK_TIME_S = (0.3, 0.7)  # the recovery scenario's own: an outage is seen within a second


class _CorpusCycle:
    """The corpus round and round, in the process's one random order, from a place of this
    user's own: every utterance as often as the others, and no copy of the corpus per user."""

    __slots__ = ("_next", "_order")

    def __init__(self, user: VoiceUser) -> None:
        self._order = user.environment.voice.corpus.shuffled(user.rng)
        self._next = user.rng.randrange(len(self._order)) if self._order else 0

    def __next__(self):
        order = self._order
        if not order:
            raise StopIteration
        utterance = order[self._next]
        self._next = (self._next + 1) % len(order)
        return utterance


class CorpusUser(VoiceUser):
    """Says the run's corpus (``--utterances``), one utterance per task."""

    weight = 4
    scenario = "corpus"

    def on_start(self) -> None:
        self.utterances = _CorpusCycle(self)

    @tag("corpus")
    @task
    def corpus_turn(self) -> None:
        self.client.say(next(self.utterances))


class BasicUser(VoiceUser):
    """Scenario 1: say "hello jarvis", check GREETING and the reply audio."""

    weight = 1
    scenario = "basic"

    @tag("basic")
    @task
    def basic(self) -> None:
        self.client.say(self.rng.choice(self.environment.voice.corpus.basic), expect="GREETING")


class StabilityUser(VoiceUser):
    """Scenario 2: 10 consecutive commands on one connection; watch reconnections and latency."""

    weight = 1
    scenario = "stability"

    def on_start(self) -> None:
        self.utterances = _CorpusCycle(self)

    @tag("stability")
    @task
    def stability(self) -> None:
        turns = []
        for number in range(STABILITY_TURNS):
            if number:
                self.think()
            turn = self.client.say(next(self.utterances))
            turns.append(turn)
            if turn.diagnosis.startswith("connection"):
                break
        ok = sum(turn.ok for turn in turns)
        pings = [turn.record.ping_ms for turn in turns if turn.record.ping_ms == turn.record.ping_ms]
        self.environment.voice.logbook.info(
            f"Stability, user {self.client.number}: {ok}/{len(turns)} commands right, "
            f"{self.client.reconnections} reconnections so far, ping {max(pings, default=float('nan')):.1f} ms at most",
            echo=False,
        )


class RecoveryUser(VoiceUser):
    """Scenario 3: keep talking through a gateway outage; the time to recover is a ``recovery`` event.

    Its think time is short (0.3-0.7 s) so that an outage is noticed within a second; a lost
    connection is reopened with the guide's backoff, and the time from the drop (or the first
    failed attempt) to the new connection is reported.
    """

    weight = 1
    scenario = "recovery"

    def think_time_s(self) -> float:
        return self.rng.uniform(*RECOVERY_THINK_TIME_S)

    @tag("recovery")
    @task
    def recovery(self) -> None:
        connection = self.client.connection
        if connection is not None and connection.is_closed and not connection.closed_cleanly:
            self.environment.voice.logbook.warning(f"User {self.client.number}: connection lost ({connection.close_reason}); "
                                    "reconnecting with backoff")
        self.client.say(self.rng.choice(self.environment.voice.corpus.basic), expect="GREETING")


class PerformanceUser(VoiceUser):
    """Scenario 4: fast commands; the process's CPU and memory are sampled as it runs."""

    weight = 1
    scenario = "performance"

    def on_start(self) -> None:
        self.utterances = _CorpusCycle(self)

    @tag("performance")
    @task
    def performance(self) -> None:
        self.client.say(next(self.utterances), pace="fast")
