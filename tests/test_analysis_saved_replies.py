"""analysis.saved_replies: turns left unjudged by the run, judged from their saved reply audio."""

from __future__ import annotations

import numpy as np

from analysis.readers import Categorical, Turns
from analysis.saved_replies import apply_verdicts


def turns_of(rows: list[dict]) -> Turns:
    def categorical(name):
        labels, codes = np.unique(np.array([r.get(name, "") for r in rows], dtype=object).astype(str),
                                  return_inverse=True)
        return Categorical(codes.astype(np.int32), labels.astype(object))

    texts = {name: categorical(name) for name in ("worker", "utterance_id", "expected_intent", "intent", "failure",
                                                  "intent_source", "audio_intent")}
    numbers = {name: np.array([float(r[name]) for r in rows]) for name in ("user", "turn_index", "success")}
    numbers["timestamp"] = np.arange(len(rows), dtype=float)
    return Turns("run_turns.csv", numbers, texts)


def verdict(key: str, heard: str, error: str = "") -> dict:
    return {"turn_key": key, "heard_intent": heard, "error": error}


def test_unjudged_answered_turns_take_the_intent_heard_and_others_keep_theirs():
    turns = turns_of([
        {"worker": "w:1", "user": 0, "turn_index": 0, "expected_intent": "GREETING", "success": 1},  # answered, unjudged
        {"worker": "w:1", "user": 0, "turn_index": 1, "expected_intent": "TIME_NOW", "success": 1},
        {"worker": "w:1", "user": 1, "turn_index": 0, "expected_intent": "ECHO", "success": 1},
        {"worker": "w:1", "user": 1, "turn_index": 1, "expected_intent": "GREETING", "success": 1,
         "intent": "GREETING", "intent_source": "metadata"},
        {"worker": "w:1", "user": 2, "turn_index": 0, "expected_intent": "GREETING", "success": 0,
         "failure": "recording_stopped"},
        {"worker": "w:2", "user": 0, "turn_index": 0, "expected_intent": "GREETING", "success": 1},  # no saved reply
    ])
    rows = [verdict("w:1:0:0", "GREETING"), verdict("w:1:0:1", "WEATHER_SIMPLE"), verdict("w:1:1:0", ""),
            verdict("w:1:1:1", "UNKNOWN"), verdict("w:1:2:0", "GREETING"), verdict("w:9:9:9", "", "cannot read")]
    judged, summary = apply_verdicts(turns, rows)
    intent, source = judged.text("intent").decode(), judged.text("intent_source").decode()
    failure, success = judged.text("failure").decode(), judged.numbers["success"]
    assert (intent[0], source[0], failure[0], success[0]) == ("GREETING", "audio", "", 1.0)
    assert (intent[1], failure[1], success[1]) == ("WEATHER_SIMPLE", "wrong_intent", 0.0)
    assert (failure[2], success[2]) == ("unjudged", 0.0)
    assert (intent[3], source[3], failure[3]) == ("GREETING", "metadata", "")  # the metadata stands...
    assert judged.text("audio_intent").decode()[3] == "UNKNOWN"  # ...and the ear's disagreement shows
    assert failure[4] == "recording_stopped"
    assert (source[5], success[5]) == ("", 1.0)  # no saved reply: left as it was
    assert summary == {"saved_replies": 6, "unreadable": 1, "matched_turns": 5, "judged_after_the_run": 3}


def test_a_turn_judged_after_the_run_records_why_winner_and_runner_up_with_scores_and_the_file():
    turns = turns_of([
        {"worker": "w:1", "user": 0, "turn_index": 0, "expected_intent": "GREETING", "success": 1},
        {"worker": "w:1", "user": 0, "turn_index": 1, "expected_intent": "TIME_NOW", "success": 1},
    ])
    rows = [{**verdict("w:1:0:0", "GREETING"), "score": 0.93, "runner_up": "UNKNOWN", "runner_up_score": 0.2,
             "expectations": "smartjarvis (built in)"},
            {**verdict("w:1:0:1", ""), "score": 0.5, "runner_up": "WEATHER_SIMPLE", "runner_up_score": 0.45,
             "expectations": "mine.json"}]
    judged, _ = apply_verdicts(turns, rows)
    assert list(judged.numbers["judge_score"]) == [0.93, 0.5]
    assert list(judged.numbers["judge_runner_up_score"]) == [0.2, 0.45]
    assert list(judged.text("judge_runner_up").decode()) == ["UNKNOWN", "WEATHER_SIMPLE"]
    assert list(judged.text("judge_expectations").decode()) == ["smartjarvis (built in)", "mine.json"]
