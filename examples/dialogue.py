"""A dialogue in plain text: greet, ask the time, ask for an echo, hang up.

    locust -f examples/dialogue.py --host ws://127.0.0.1:7090 --headless -u 5 -r 5 -t 30s --csv results/dialogue
"""

from locust import task

from voiceharness.locust import VoiceUser


class Dialogue(VoiceUser):
    @task
    def greet_ask_the_time_and_an_echo(self):
        # Plain text is spoken by espeak-ng on first use and cached; expect= is the intent to hear back.
        self.client.say("hello jarvis", expect="GREETING", name="1 greet")
        self.think()
        self.client.say("what time is it", expect="TIME_NOW", name="2 ask the time")
        self.think()
        # A check of your own: the turn fails unless the gateway repeats the words.
        with self.client.say("echo nice to meet you", expect="ECHO", name="3 echo", catch_response=True) as turn:
            if "nice to meet you" not in turn.reply_text.lower():
                turn.failure(f"the echo said {turn.reply_text!r}")
        self.client.hangup()
