"""Judging a run's replies after it ended, from the audio it saved (``--save-replies DIR``).

A gateway that sends no metadata (the published SmartJARVIS gateway) is judged by what its
replies say. At a high load one judge process cannot hear every reply live, so the harness
saves the reply audio; ``python -m analysis PREFIX --judge-replies DIR`` hears them here, with
as many processes as the machine has cores, and completes the turns the run left unjudged:

* a turn that was answered and not judged (``intent_source`` empty, no failure) takes the
  intent heard in its reply (``intent_source = audio``): the expected one → success; another →
  ``wrong_intent``; nothing classifiable → ``unjudged`` — as the live judge decides
  (:mod:`voiceharness.judge`);
* every turn with a saved reply gets ``audio_intent``, so turns whose intent came from the
  gateway's metadata show how often the audio agrees with it.

Turns are matched to replies by ``worker:user:turn_index``, the key the harness writes.
"""

from __future__ import annotations

import os

import numpy as np

from analysis.readers import Categorical, Turns
from voiceharness.errors import AnalysisError


def judge_run(turns: Turns, directory: str, expectations: str, *, workers: int | None = None,
              method: str = "hybrid") -> tuple[Turns, dict]:
    """The turns completed with the verdicts of the replies saved in ``directory``, and a summary."""
    from voiceharness.listener_pool import judge_saved_replies

    if "turn_index" not in turns.numbers:
        raise AnalysisError(f"{turns.path}: has no turn_index column, so its turns cannot be matched to saved "
                            "replies; it was written by an older harness")
    rows = judge_saved_replies(directory, expectations, workers=workers or os.cpu_count() or 1, method=method)
    return apply_verdicts(turns, rows)


def apply_verdicts(turns: Turns, rows: list[dict]) -> tuple[Turns, dict]:
    """Apply judged replies (rows of :func:`voiceharness.listener_pool.judge_saved_replies`) to turns."""
    heard = {row["turn_key"]: row for row in rows if not row["error"]}
    keys = [f"{worker}:{int(user)}:{int(index)}" for worker, user, index in zip(
        turns.text("worker").decode(), turns.numbers["user"], turns.numbers["turn_index"], strict=True)]
    intent = turns.text("intent").decode().astype(object)
    source = turns.text("intent_source").decode().astype(object)
    audio_intent = turns.text("audio_intent").decode().astype(object)
    failure = turns.text("failure").decode().astype(object)
    expected = turns.text("expected_intent").decode()
    success = turns.numbers["success"].copy()
    # The verdict's why (files written before these columns existed get them here).
    nan = np.full(len(keys), np.nan)
    judge_score = turns.numbers.get("judge_score", nan).copy()
    runner_up_score = turns.numbers.get("judge_runner_up_score", nan).copy()
    runner_up = (turns.text("judge_runner_up").decode().astype(object) if "judge_runner_up" in turns.texts
                 else np.full(len(keys), "", dtype=object))
    judged_by = (turns.text("judge_expectations").decode().astype(object) if "judge_expectations" in turns.texts
                 else np.full(len(keys), "", dtype=object))
    completed = matched = 0
    for position, key in enumerate(keys):
        row = heard.get(key)
        if row is None:
            continue
        matched += 1
        audio_intent[position] = row["heard_intent"]
        if source[position] or failure[position]:
            continue  # judged already (by metadata or live), or failed for another reason
        completed += 1
        judge_score[position] = float(row["score"]) if row.get("score") not in (None, "") else np.nan
        runner_up_score[position] = (float(row["runner_up_score"]) if row.get("runner_up_score") not in (None, "")
                                     else np.nan)
        runner_up[position], judged_by[position] = row.get("runner_up", ""), row.get("expectations", "")
        if not row["heard_intent"]:
            failure[position], success[position] = "unjudged", 0.0
            continue
        intent[position], source[position] = row["heard_intent"], "audio"
        if expected[position] and row["heard_intent"] != expected[position]:
            failure[position], success[position] = "wrong_intent", 0.0
    texts = dict(turns.texts)
    for name, values in (("intent", intent), ("intent_source", source), ("audio_intent", audio_intent),
                         ("failure", failure), ("judge_runner_up", runner_up), ("judge_expectations", judged_by)):
        labels, codes = np.unique(values.astype(str), return_inverse=True)
        texts[name] = Categorical(codes.astype(np.int32), labels.astype(object))
    numbers = dict(turns.numbers)
    numbers["success"] = success
    numbers["judge_score"], numbers["judge_runner_up_score"] = judge_score, runner_up_score
    summary = {"saved_replies": len(rows), "unreadable": sum(bool(r["error"]) for r in rows),
               "matched_turns": matched, "judged_after_the_run": completed}
    return Turns(turns.path, numbers, texts), summary
