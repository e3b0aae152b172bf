"""``python -m bench.hybrid_branches``: when the hybrid judge takes the grammar's verdict, is it right?

::

    python -m bench.hybrid_branches                                   # the held-out sets' stored results
    python -m bench.hybrid_branches --files bench/results/judge-tuning.json

Reads the ``grammar`` and ``lm`` rows that ``python -m bench judge`` stored for each reply (each
sentence in each voice) and replays :func:`voiceharness.listener.hybrid_takes_grammar`'s second
branch: the language model left the reply unjudged and heard next to nothing of any intent (best
score under ``HYBRID_LM_NOTHING_SCORE``), the grammar heard an expected phrase nearly whole (score
at least ``HYBRID_TRUST_SCORE``). For each such reply it prints whether the grammar's intent was
right, and how alike the two transcripts *sound*: 1 minus the edit distance between their phone
strings (pocketsphinx's own en-us dictionary) over the longer one. A grammar that heard the reply
(espeak-ng's voice, which the language model turns into other words) sounds like the language
model's transcript; a grammar that forced an unknown sentence into a template does not. The table
then counts right and wrong at a few similarity floors. A result file that lacks either method's
rows is named and skipped.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from bench import common
from voiceharness.listener import HYBRID_LM_NOTHING_SCORE, HYBRID_TRUST_SCORE

HELD_OUT_FILES = tuple(common.RESULTS / f"judge-{name}.json"
                       for name in ("heldout", "heldout2", "heldout3", "heldout4", "heldout5", "heldout6"))
FLOORS = (0.0, 0.2, 0.25, 0.31, 0.35)
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


def grammar_only_replies(path: Path) -> list[tuple[bool, float, str, str]] | None:
    """(right, sound-alike, grammar's transcript, language model's) for each reply the branch decides."""
    methods = common.read_json(path).get("methods", {})
    if "lm" not in methods or "grammar" not in methods:
        return None
    grammar = {(row["voice"], row["reply"]): row for row in methods["grammar"]["rows"]}
    replies = []
    for row in methods["lm"]["rows"]:
        heard = grammar.get((row["voice"], row["reply"]))
        if heard is None or row["heard"] not in NOT_JUDGED or heard["heard"] in NOT_JUDGED:
            continue
        if (heard["score"] or 0) >= HYBRID_TRUST_SCORE and (row["score"] or 0) < HYBRID_LM_NOTHING_SCORE:
            replies.append((heard["heard"] == heard["intent"], sound_alike(heard["transcript"], row["transcript"]),
                            heard["transcript"], row["transcript"]))
    return replies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hybrid_branches", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", nargs="*", type=Path, default=list(HELD_OUT_FILES),
                        help="judge result files (default: the held-out sets' in bench/results)")
    args = parser.parse_args(argv)
    everything: list[tuple[bool, float, str, str]] = []
    for path in args.files:
        replies = grammar_only_replies(path) if path.exists() else None
        if replies is None:
            print(f"{path}: skipped (no such file, or no grammar and lm rows: run python -m bench.judge "
                  f"--set SET --methods grammar,lm)", file=sys.stderr)
            continue
        for right, alike, grammar, lm in sorted(replies, key=lambda reply: reply[1]):
            print(f"{path.stem:16} {'right' if right else 'WRONG'} {alike:.2f}  grammar: {grammar[:44]:44}  lm: {lm[:44]}")
        everything += replies
    print("\nsound-alike floor | right | wrong")
    for floor in FLOORS:
        kept = [reply for reply in everything if reply[1] >= floor]
        print(f"{floor:17.2f} | {sum(r[0] for r in kept):5d} | {sum(not r[0] for r in kept):5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
