"""examples/dialogue.py: the README's "Write your own scenario", run headless against the reference gateway."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict

import pytest
from conftest import ROOT, run_locust

from audio_corpus import text_utterance_id
from audio_corpus.resolve import DEFAULT_RATE_WPM, DEFAULT_VOICE

EXAMPLE = ROOT / "examples" / "dialogue.py"
README = ROOT / "README.md"
# The dialogue's turns, in the order a user says them: (request name, text).
DIALOGUE = (("1 greet", "hello jarvis"), ("2 ask the time", "what time is it"), ("3 echo", "echo nice to meet you"))
TURN_EVENTS = ("intent", "roundtrip", "audible", "reply")  # the events every answered turn fires


def _read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def test_the_readme_shows_the_example_locustfile_as_it_is():
    """The README's "Write your own scenario" holds examples/dialogue.py verbatim, so the two never drift."""
    section = README.read_text(encoding="utf-8").split("## Write your own scenario", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert EXAMPLE.read_text(encoding="utf-8") in blocks


@pytest.mark.slow
def test_the_dialogue_example_runs_headless_every_turn_named_no_failure_turns_in_order(shared_gateway, tmp_path):
    # Locust's final counts come from --json-file: its _stats.csv is a snapshot taken every second,
    # without the turns that end as the run stops.
    prefix = tmp_path / "dialogue"
    # The run ends once every user has said the whole dialogue (120 s only guards against a hang).
    run = run_locust(prefix, shared_gateway.url, "--json-file", f"{prefix}_final", users=3, spawn_rate=3,
                     run_time="120s", timeout_s=240, locustfile=str(EXAMPLE), stop_after_turns=len(DIALOGUE),
                     stop_each_user=True)
    assert run.returncode == 0, run.output[-3000:]

    stats = json.loads(run.file("_final.json").read_text())
    assert sum(entry["num_failures"] for entry in stats) == 0, stats
    requests = {(entry["method"], entry["name"]): entry["num_requests"] for entry in stats}

    turns = _read_csv(run.file("_turns.csv"))
    ids = [text_utterance_id(text, DEFAULT_VOICE, DEFAULT_RATE_WPM) for _, text in DIALOGUE]
    name_of = {uid: name for uid, (name, _) in zip(ids, DIALOGUE)}
    answered = [turn for turn in turns if turn["failure"] != "run_stopped"]  # the end of the run cuts the last ones
    assert {turn["failure"] for turn in answered} == {""}
    assert {turn["success"] for turn in answered} == {"1"}

    # Every turn fired its events under its own name: one of each per answered turn of that step.
    for uid, name in name_of.items():
        said = sum(turn["utterance_id"] == uid for turn in answered)
        assert said >= 1, name
        for event in TURN_EVENTS:
            assert requests.get((event, name)) == said, (event, name, requests)
    assert not [key for key in requests if key[0] in TURN_EVENTS and key[1] not in name_of.values()]

    # Per user, the turns in their order are greet, time, echo, greet, ... with none missing.
    by_user: dict[str, list[dict[str, str]]] = defaultdict(list)
    for turn in turns:
        by_user[turn["user"]].append(turn)
    assert len(by_user) == 3
    for user, own in by_user.items():
        own.sort(key=lambda turn: int(turn["turn_index"]))
        assert [int(turn["turn_index"]) for turn in own] == list(range(len(own))), user
        assert [turn["utterance_id"] for turn in own] == [ids[i % len(ids)] for i in range(len(own))], user
        assert sum(turn["failure"] != "run_stopped" for turn in own) >= len(DIALOGUE), f"user {user}: no whole dialogue"
