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

Importing this package registers the harness's command-line options and its Locust hooks
(records, resources, run status). Modules: :mod:`.client` (``VoiceClient``), :mod:`.user`
(``VoiceUser``), :mod:`.scenarios` (the guide's scenarios), :mod:`.transport` (the gevent
WebSocket), :mod:`.pacer` (the process-wide real-time sender), :mod:`.options`,
:mod:`.process`, :mod:`.records`, :mod:`.resources`, :mod:`.run_status`, :mod:`.collector`.
Only this package imports Locust and gevent; the rest of ``voiceharness`` imports without them.
"""

from voiceharness.locust import options as _options  # noqa: F401 (registers the command-line options)
from voiceharness.locust.client import VoiceClient, VoiceFailure
from voiceharness.locust.user import VoiceUser
from voiceharness.turn import Turn

__all__ = ["Turn", "VoiceClient", "VoiceFailure", "VoiceUser"]
