"""``python -m bench.judge_model``: build the reply judge's learned model, and choose its threshold.

::

    python -m bench.judge_model --cross-validate   # leave one retired held-out set out at a time
    python -m bench.judge_model --write            # train on all of them: voiceharness/expectations/reply_intents_model.json

The model (:mod:`voiceharness.expectations.learned`) learns from the language model's
transcripts of the tuning sets (:data:`TUNING_SETS`) and of the retired held-out sets, stored by ``python -m bench
judge`` in ``bench/results/judge-SET.json`` (the ``lm`` method's rows: each reply sentence in
each voice, its request and its intent). Never from the current held-out set
(:data:`bench.judge.CURRENT_HELDOUT`), which measures it.

``--cross-validate`` trains on the tuning sets and all retired held-out sets but one, judges the
left-out set's transcripts with the rules and then, where they leave a reply unjudged, the model
at each threshold, and prints what the model added (right, wrong) per set and in total:
the threshold shipped (:data:`voiceharness.expectations.learned.MIN_PROBABILITY`) is read from it.
It also prints which of the rules' verdicts the model would take away (right, wrong) at each floor
of its agreement: :data:`voiceharness.expectations.learned.MIN_AGREEMENT` is read from that; and
which verdicts of the language model's alternatives (the rows they decided in the stored runs) it
would keep at each floor: :data:`voiceharness.listener.ALTERNATIVES_MODEL_AGREES`.
"""

from __future__ import annotations

import json
import sys

from bench import common
from bench.judge import CURRENT_HELDOUT

# The tuning sets: the replies the rules were tuned on, and the published time-of-day templates at
# clock times all day in the reference gateway's voice (bench/judge_sets/clock.tsv: the language
# model hears espeak-ng's clock times as other words, and a model that had read the tuning set's
# sixteen left 14 % of them unjudged at other times of day). Never left out in the cross-validation.
TUNING_SETS = ("tuning", "clock")
RETIRED_SETS = ("heldout", "heldout2", "heldout3", "heldout4", "heldout5", "heldout6", "heldout7", "heldout8", "heldout9",
                "heldout10", "heldout11", "heldout12", "heldout13", "heldout14", "heldout15")
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
AGREEMENTS = (0.1, 0.2, 0.3, 0.4, 0.5)  # model_disagrees: below this, a rules' verdict goes
ALTERNATIVES_FLOORS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9)  # ... and a verdict of the language model's alternatives
MODEL_PATH = common.REPO / "voiceharness" / "expectations" / "reply_intents_model.json"


def examples(set_name: str) -> list[tuple[str, str, str, str]]:
    """(transcript, request, intent, sentence id) of the lm rows of ``judge-SET.json``."""
    if set_name == CURRENT_HELDOUT:
        raise SystemExit(f"bench judge_model: {set_name} is the current held-out set; it measures the model")
    result = common.read_json(common.RESULTS / f"judge-{set_name}.json")
    return [(row["transcript"], row["request"], row["intent"], f"{set_name}|{row['reply']}")
            for row in result["methods"]["lm"]["rows"]]


def alternatives_verdicts(set_name: str, expectations) -> list[tuple[str, str, str, str]]:
    """(transcript, request, intent, verdict) of the lm rows of ``judge-SET.json`` that the language
    model's alternatives decided: the transcript is the alternative that said the verdict, judged
    by today's rules (the stored verdict when they now leave it unjudged)."""
    result = common.read_json(common.RESULTS / f"judge-{set_name}.json")
    decided = []
    for row in result["methods"]["lm"]["rows"]:
        if row.get("decided_by") == "lm alternatives":
            verdict = expectations.judge(row["transcript"], row["request"]).intent or row["heard"]
            decided.append((row["transcript"], row["request"], row["intent"], verdict))
    return decided


def build(sets: tuple[str, ...]):
    from voiceharness.expectations import load_expectations
    from voiceharness.expectations.learned import train

    expectations = load_expectations("smartjarvis")
    rows = [row for name in sets for row in examples(name)]
    return train(rows, expectations, trained_on=", ".join(sets)), expectations


def cross_validate() -> dict:
    """Leave each retired held-out set out in turn: what the model adds to the rules on it, per threshold."""
    from voiceharness.expectations import load_expectations
    from voiceharness.expectations.learned import features, fit, names_two_subjects

    expectations = load_expectations("smartjarvis")
    intents = tuple(expectations.intents)
    judged = {}  # set -> [(features, intent, sentence id, rules' verdict, transcript, request)]
    for name in (*TUNING_SETS, *RETIRED_SETS):
        judged[name] = []
        for transcript, request, intent, sentence in examples(name):
            verdict = expectations.judge(transcript, request)
            judged[name].append((features(expectations, transcript, request, verdict.scores), intent, sentence,
                                 verdict, transcript, request))
    totals = {t: [0, 0] for t in THRESHOLDS}
    taken = {a: [0, 0] for a in AGREEMENTS}  # rules' verdicts the model would take away: right, wrong
    rules_total = [0, 0, 0, 0]  # replies, right, wrong, unjudged
    alternatives_kept = {a: [0, 0] for a in ALTERNATIVES_FLOORS}  # the alternatives' verdicts kept: right, wrong
    for left_out in RETIRED_SETS:
        training = [(f, i, s) for name, rows in judged.items() if name != left_out for f, i, s, *_ in rows]
        model = fit(training, intents)
        rows = judged[left_out]
        right = sum(v.intent == i for _, i, _, v, _, _ in rows)
        wrong = sum(v.intent not in (None, i) for _, i, _, v, _, _ in rows)
        unjudged = [(i, v, t, r) for _, i, _, v, t, r in rows if v.intent is None]
        for figure, value in enumerate((len(rows), right, wrong, len(unjudged))):
            rules_total[figure] += value
        line = [f"{left_out:9} rules {right}/{len(rows)} right, {wrong} wrong, {len(unjudged)} unjudged; model adds"]
        best = []
        for intent, verdict, transcript, request in unjudged:
            if names_two_subjects(expectations, transcript, request):
                continue  # judge_unjudged leaves it
            probabilities = model.probabilities(expectations, transcript, request, verdict.scores)
            heard = max(probabilities, key=probabilities.get)
            best.append((heard, probabilities[heard], intent))
        for threshold in THRESHOLDS:
            gained = sum(h == i and p >= threshold for h, p, i in best)
            lost = sum(h != i and p >= threshold for h, p, i in best)
            totals[threshold][0] += gained
            totals[threshold][1] += lost
            line.append(f"{threshold}: +{gained}/-{lost}")
        agreement = [(v.intent == i, model.probabilities(expectations, t, r, v.scores)[v.intent])
                     for _, i, _, v, t, r in rows if v.intent is not None]
        line.append("; model takes away (right/wrong)")
        for floor in AGREEMENTS:
            away = (sum(right and p < floor for right, p in agreement), sum(not right and p < floor for right, p in agreement))
            taken[floor] = [taken[floor][0] + away[0], taken[floor][1] + away[1]]
            line.append(f"<{floor}: {away[0]}/{away[1]}")
        line.append("; the alternatives' verdicts kept (right/wrong)")
        decided = [(verdict == intent, model.probabilities(expectations, transcript, request).get(verdict, 0.0))
                   for transcript, request, intent, verdict in alternatives_verdicts(left_out, expectations)]
        for floor in ALTERNATIVES_FLOORS:
            kept = (sum(right and p >= floor for right, p in decided), sum(not right and p >= floor for right, p in decided))
            alternatives_kept[floor] = [alternatives_kept[floor][0] + kept[0], alternatives_kept[floor][1] + kept[1]]
            line.append(f">={floor}: {kept[0]}/{kept[1]}")
        print(" ".join(line), flush=True)
    n, right, wrong, unjudged = rules_total
    print(f"all       rules {right}/{n} right, {wrong} wrong, {unjudged} unjudged; model adds "
          + " ".join(f"{t}: +{g}/-{w}" for t, (g, w) in totals.items())
          + "; model takes away (right/wrong) " + " ".join(f"<{a}: {r}/{w}" for a, (r, w) in taken.items())
          + "; the alternatives' verdicts kept (right/wrong) "
          + " ".join(f">={a}: {r}/{w}" for a, (r, w) in alternatives_kept.items()))
    return {"rules": rules_total, "model_adds": {str(t): v for t, v in totals.items()},
            "model_takes_away": {str(a): v for a, v in taken.items()},
            "alternatives_kept": {str(a): v for a, v in alternatives_kept.items()}}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.judge_model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cross-validate", action="store_true", help="leave one retired held-out set out at a time")
    parser.add_argument("--write", action="store_true", help=f"train on every set and write {MODEL_PATH.name}")
    args = parser.parse_args(argv)
    if not (args.cross_validate or args.write):
        parser.error("give --cross-validate and/or --write")
    if args.cross_validate:
        cross_validate()
    if args.write:
        model, _ = build((*TUNING_SETS, *RETIRED_SETS))
        MODEL_PATH.write_text(json.dumps(model.to_json(), indent=0, sort_keys=False) + "\n", encoding="utf-8")
        print(f"wrote {MODEL_PATH} ({len(model.vocabulary)} features)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
