"""``python -m bench.hybrid_branches``: when the hybrid judge takes the grammar's verdict, is it right?

::

    python -m bench.hybrid_branches                                   # the retired held-out sets' stored results
    python -m bench.hybrid_branches --files bench/results/judge-tuning.json

Reads the ``grammar`` and ``lm`` rows that ``python -m bench judge`` stored for each reply (each
sentence in each voice) and replays :func:`voiceharness.listener.hybrid_takes_grammar` with
today's rules and a learned model that never read the set: the replies whose language-model
transcript today's rules and model leave unjudged (a reply the language model's alternatives
decided in the run is left out: they are not stored), and whose grammar transcript names an
intent with a score of at least ``HYBRID_TRUST_SCORE``. Each is shown with the way the grammar
would come in (:func:`voiceharness.listener.grammar_way_in`):

* ``lean``: the grammar's intent is the one the language model's transcript leaned to (its best
  rule score, however small);
* ``nothing``: the language model heard next to nothing of any intent (best score before the
  subjectless discount under ``HYBRID_LM_NOTHING_SCORE``);

and two measures of whether the grammar heard the reply or forced it into a template:

* ``model``: the learned model's probability (:mod:`voiceharness.expectations.learned`) of the
  grammar's intent, reading the language model's transcript. The model judging a held-out set's
  replies is trained *without* that set (the tuning sets and the other retired sets), so the figure
  is what a model that never read those replies says; a file that is not a retired held-out set
  is judged by a model trained on all of them. The grammar counts when it is at least
  ``HYBRID_MODEL_AGREES`` (round 6 for ``nothing``, round 10 for ``lean`` too).
* ``alike``: how alike the two transcripts *sound*: 1 minus the edit distance between their phone
  strings (pocketsphinx's own en-us dictionary) over the longer one (round 5's trial, not adopted).

The tables then count right and wrong per way in, at a few floors of each. A result file that
lacks either method's rows is named and skipped.
"""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import common
from bench.judge_model import RETIRED_SETS
from voiceharness.listener import HYBRID_MODEL_AGREES, grammar_way_in

HELD_OUT_FILES = tuple(common.RESULTS / f"judge-{name}.json" for name in RETIRED_SETS)
FLOORS = (0.0, 0.2, 0.25, 0.31, 0.35)
MODEL_FLOORS = (0.0, 0.3, 0.4, HYBRID_MODEL_AGREES, 0.6, 0.8)
NOT_JUDGED = (None, "", "(none)")


@functools.cache
def _pronunciations() -> dict[str, tuple[str, ...]]:
    """Each word's first pronunciation in the en-us dictionary the decoders use."""
    from pocketsphinx import get_model_path

    words: dict[str, tuple[str, ...]] = {}
    with open(get_model_path("en-us/cmudict-en-us.dict"), encoding="utf-8") as file:
        for line in file:
            word, *phones = line.split()
            words.setdefault(word.split("(")[0], tuple(phones))
    return words


def sound_alike(first: str, second: str) -> float:
    """1 - the edit distance between two transcripts' phone strings over the longer one (0 when
    either has no known word)."""
    words = _pronunciations()
    a = [phone for word in first.lower().split() for phone in words.get(word, ())]
    b = [phone for word in second.lower().split() for phone in words.get(word, ())]
    if not a or not b:
        return 0.0
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return 1 - previous[-1] / max(len(a), len(b))


@functools.cache
def _model_without(set_name: str):
    """The learned model trained on the tuning sets and every retired held-out set but ``set_name``
    (all of them when it is none of them), and the smartjarvis expectations."""
    from bench.judge_model import TUNING_SETS, build

    return build(tuple(name for name in (*TUNING_SETS, *RETIRED_SETS) if name != set_name))


@dataclass(frozen=True)
class GrammarReply:
    """One reply the grammar may decide: the way in, was the grammar right, and the two measures."""

    way: str  # "lean", "nothing"
    right: bool
    model: float
    alike: float
    grammar: str
    lm: str


def grammar_only_replies(path: Path) -> list[GrammarReply] | None:
    """The replies the grammar may decide in one result file (None: it lacks grammar or lm rows)."""
    from voiceharness.expectations.learned import judge_unjudged, names_two_subjects

    result = common.read_json(path)
    methods = result.get("methods", {})
    if "lm" not in methods or "grammar" not in methods:
        return None
    model, expectations = _model_without(result.get("set", ""))
    grammar = {(row["voice"], row["reply"]): row for row in methods["grammar"]["rows"]}
    replies = []
    for row in methods["lm"]["rows"]:
        heard = grammar.get((row["voice"], row["reply"]))
        if heard is None or (row.get("decided_by") == "lm alternatives" and row["heard"] not in NOT_JUDGED):
            continue
        # Today's rules and model on both transcripts (the stored verdicts are the run's).
        lm_verdict = expectations.judge(row["transcript"], row["request"])
        if judge_unjudged(expectations, lm_verdict, row["transcript"], row["request"], model).intent is not None:
            continue
        grammar_verdict = expectations.judge(heard["transcript"], row["request"])
        way = grammar_way_in(lm_verdict, grammar_verdict,
                             lm_names_two_subjects=names_two_subjects(expectations, row["transcript"], row["request"]))
        if way is None:
            continue
        agrees = model.probabilities(expectations, row["transcript"], row["request"], lm_verdict.scores or None)
        replies.append(GrammarReply(way, grammar_verdict.intent == row["intent"],
                                    agrees.get(grammar_verdict.intent, 0.0),
                                    sound_alike(heard["transcript"], row["transcript"]),
                                    heard["transcript"], row["transcript"]))
    return replies


def _count(title: str, floors: tuple[float, ...], replies: list[GrammarReply], measure) -> None:
    print(f"\n{title} floor | right | wrong")
    for floor in floors:
        kept = [reply for reply in replies if measure(reply) >= floor]
        print(f"{floor:{len(title) + 6}.2f} | {sum(r.right for r in kept):5d} | {sum(not r.right for r in kept):5d}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hybrid_branches", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", nargs="*", type=Path, default=list(HELD_OUT_FILES),
                        help="judge result files (default: the held-out sets' in bench/results)")
    args = parser.parse_args(argv)
    everything: list[GrammarReply] = []
    for path in args.files:
        replies = grammar_only_replies(path) if path.exists() else None
        if replies is None:
            print(f"{path}: skipped (no such file, or no grammar and lm rows: run python -m bench.judge "
                  f"--set SET --methods grammar,lm)", file=sys.stderr)
            continue
        for reply in sorted(replies, key=lambda reply: (reply.way, reply.model)):
            print(f"{path.stem:16} {reply.way:7} {'right' if reply.right else 'WRONG'} model {reply.model:.2f} "
                  f"alike {reply.alike:.2f}  grammar: {reply.grammar[:40]:40}  lm: {reply.lm[:40]}")
        everything += replies
    for way in ("lean", "nothing"):
        replies = [reply for reply in everything if reply.way == way]
        print(f"\n== the grammar comes in by '{way}': {len(replies)} replies")
        _count("learned model agrees", MODEL_FLOORS, replies, lambda reply: reply.model)
        _count("sound-alike", FLOORS, replies, lambda reply: reply.alike)
    return 0


if __name__ == "__main__":
    sys.exit(main())
