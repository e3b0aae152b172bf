"""``VoiceUser``: the abstract Locust user that owns a :class:`~voiceharness.locust.client.VoiceClient`.

Like Locust's ``HttpUser``, it gives ``self.client`` and leaves the tasks to its subclasses::

    from locust import task
    from voiceharness.locust import VoiceUser

    class Dialogue(VoiceUser):
        @task
        def greet_then_ask_the_time(self):
            self.client.say("hello jarvis", expect="GREETING")
            self.client.say("what time is it", expect="TIME_NOW")
            self.client.hangup()

It holds the reconnect policy (after a failed connection the next task waits the guide's
backoff, min(1000·2ⁿ, 30000) ms with jitter, instead of the think time; after maxRetries the
user stops) and the think time between tasks (``--think-time-ms``). ``think()`` pauses inside
a task, as a person does between the commands of one dialogue.
"""

from __future__ import annotations

import random

import gevent
from locust import User

from voiceharness.locust.client import VoiceClient


class VoiceUser(User):
    """A person at the browser tester: Connect, then say commands and wait for the answers."""

    abstract = True

    def __init__(self, environment) -> None:
        super().__init__(environment)
        self.retry_in_s: float | None = None  # the reconnect backoff, when the last connection failed
        self.client = VoiceClient(self)
        # The process's random source (environment.voice.rng); a user that needs a stream of its
        # own (a seeded one, as CallerUser's) sets its own.
        self.rng: random.Random = self.client.runtime.rng

    @property
    def config(self):
        """The run's options (:class:`voiceharness.locust.options.VoiceRunConfig`)."""
        return self.client.runtime.config

    def wait_time(self) -> float:
        """Seconds before the next task: the reconnect backoff after a failed connection, else the think time."""
        if self.retry_in_s is not None:
            delay, self.retry_in_s = self.retry_in_s, None
            return delay
        return self.think_time_s()

    def think_time_s(self) -> float:
        low, high = self.config.think_time_s
        return self.rng.uniform(low, high)

    def think(self) -> None:
        """Pause for one think time (--think-time-ms) between the turns of a task."""
        gevent.sleep(self.think_time_s())

    def on_stop(self) -> None:
        self.client.on_stop()
