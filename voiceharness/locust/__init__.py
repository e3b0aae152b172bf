"""The harness in Locust: a voice client in Locust's style, and the users that own it.

::

    from locust import task
    from voiceharness.locust import VoiceUser

    class MyDialogue(VoiceUser):
        @task
        def dialogue(self):
            self.client.say("hello jarvis", expect="GREETING")
            with self.client.say("what time is it", catch_response=True) as turn:
                if turn.intent != "TIME_NOW":
                    turn.failure("no time")

    locust -f my_locustfile.py --host ws://127.0.0.1:7090 [--dialect smartjarvis] ...

Everything a run's users share is one object on Locust's environment, ``environment.voice``
(:class:`~voiceharness.locust.runtime.VoiceRuntime`): made from the command line's options when
Locust runs a locustfile, or by :func:`attach` when Locust runs as a library. Modules:
:mod:`.runtime` (the runtime and its hooks), :mod:`.client` (``VoiceClient``), :mod:`.user`
(``VoiceUser``), :mod:`.scenarios` (the guide's scenarios), :mod:`.transport` (the gevent
WebSocket), :mod:`.pacer` (the real-time sender of every stream of a process), :mod:`.options`,
:mod:`.records`, :mod:`.resources`, :mod:`.run_status`, :mod:`.collector`, :mod:`.judging`, :mod:`.locust_csv`,
:mod:`.metrics` (``--voice-metrics-port``: the run's live metrics for Prometheus).
Only this package imports Locust and gevent; the rest of ``voiceharness`` imports without them.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Turn", "VoiceClient", "VoiceFailure", "VoiceRuntime", "VoiceUser", "attach"]

_PUBLIC = {"Turn": "voiceharness.turn", "VoiceClient": "voiceharness.locust.client",
           "VoiceFailure": "voiceharness.locust.client", "VoiceUser": "voiceharness.locust.user",
           "VoiceRuntime": "voiceharness.locust.runtime", "attach": "voiceharness.locust.runtime"}


def __getattr__(name: str) -> Any:
    """The public API, imported on first use: importing Locust monkey-patches the whole process
    (gevent), so a tool that imports only a submodule of this package (the transport's frame
    reader, the collector) must not pay for it; a locustfile that imports ``VoiceUser`` gets
    every hook of the harness registered with it."""
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
