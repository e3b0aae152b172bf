"""Learn a gateway's reply phrasing from the gateway: an expectations file for the reply judge.

::

    voice-calibrate --host ws://127.0.0.1:7090 --dialect smartjarvis --out expectations.json
    python -m voiceharness.calibrate --host ws://gateway:7090/ws/audio --repeats 3 --out mine.json

Plays corpus utterances through the gateway, one voice at a time (the one-voice transport of
:mod:`voiceharness.replay`), each a few times (a gateway that picks its reply wording at random
shows its variety), transcribes every reply with the open-vocabulary language model (the
``lm`` method of :mod:`voiceharness.listener`), and writes an expectations file
(:mod:`voiceharness.expectations` documents the format) with, per intent:

* ``phrases`` — the replies heard, clock times replaced by ``{time}`` and the request's words
  said back by ``{request}``;
* ``keywords`` — the words heard in most of this intent's replies and in no other's.

A reply counts for the intent the gateway said in its metadata, or, without metadata, for the
intent the corpus expects of the utterance. Then it judges every reply it heard against the
file it wrote, each without its own phrase (leave one out), prints the confusion matrix, and
warns when two intents answer alike (a reply of one judged as the other, or the same phrase in
both): the judge cannot tell them apart, and a run would count their turns unjudged or wrong.
Review the file, then pass it with ``--reply-expectations FILE``.

Exit status: 0 when every intent's replies were told apart, 1 when some were not (the file is
written all the same), 2 on a usage error (a wrong host, an unknown dialect...).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from voiceharness import dialects
from voiceharness.errors import HarnessError, UsageError
from voiceharness.expectations import (
    _COMMON_WORDS,
    CLOCK_NUMBER_WORDS,
    _aligned_span,
    clock_span,
    load_expectations,
    normalize_words,
    request_words,
)

__all__ = ["Calibration", "HeardReply", "calibrate", "main", "write_expectations"]

DEFAULT_REPEATS = 3
DEFAULT_PER_INTENT = 4  # distinct utterances per intent
# A word is an intent's keyword when it is in at least this share of its replies and in no
# other intent's.
KEYWORD_SHARE = 0.3
MAX_KEYWORDS = 6
MAX_PHRASES = 24
NONE = "(none)"


@dataclass(frozen=True)
class HeardReply:
    """One reply: the intent it answered, what was said to the gateway, what the reply said."""

    intent: str
    request_text: str
    transcript: str


@dataclass
class Calibration:
    """The expectations learned (``data``: the JSON), and how well they separate the intents."""

    data: dict
    replies: list[HeardReply]
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    alike: list[tuple[str, str, str]] = field(default_factory=list)  # (intent, intent, why)

    @property
    def separated(self) -> bool:
        return not self.alike


def _phrase(reply: HeardReply, command_words: tuple[tuple[str, ...], ...]) -> str:
    """The reply's words with its clock time as {time} and the request said back as {request}."""
    words = normalize_words(reply.transcript)
    request = request_words(reply.request_text, command_words)
    tokens: list[str] = list(words)
    if request:
        share, start, end = _aligned_span(request, words)
        if share >= 0.6 and end > start:
            tokens[start:end] = ["{request}"]
    span = clock_span([t if not t.startswith("{") else "" for t in tokens])
    if span is not None:
        start, end = span
        tokens[start:end] = ["{time}"]
    return " ".join(tokens)


def calibrate(replies: Iterable[HeardReply], *, command_words: Iterable[str] = (), description: str = "") -> Calibration:
    """Expectations learned from ``replies`` (pure: no gateway, no audio), and the separation report."""
    replies = [r for r in replies if normalize_words(r.transcript)]
    commands = tuple(tuple(normalize_words(c)) for c in command_words if normalize_words(c))
    intents = sorted({r.intent for r in replies})
    phrases: dict[str, Counter] = {intent: Counter() for intent in intents}
    for reply in replies:
        phrase = _phrase(reply, commands)
        if phrase:
            phrases[reply.intent][phrase] += 1
    # Keywords: in many of this intent's replies, in none of another's.
    presence: dict[str, Counter] = {intent: Counter() for intent in intents}
    counts = Counter(r.intent for r in replies)
    for reply in replies:
        said_back = set(request_words(reply.request_text, commands))
        words = {w for w in normalize_words(reply.transcript)
                 if w not in _COMMON_WORDS and w not in said_back and w not in CLOCK_NUMBER_WORDS and len(w) > 2}
        presence[reply.intent].update(words)
    data: dict = {"description": description or "Calibrated from the gateway's replies (voice-calibrate): "
                  "review before use.", "intents": {}}
    if commands:
        data["command_words"] = [" ".join(c) for c in commands]
    for intent in intents:
        others = set().union(*(presence[o] for o in intents if o != intent)) if len(intents) > 1 else set()
        keywords = [w for w, n in presence[intent].most_common()
                    if n >= KEYWORD_SHARE * counts[intent] and w not in others][:MAX_KEYWORDS]
        spec: dict = {}
        if phrases[intent]:
            spec["phrases"] = [p for p, _ in phrases[intent].most_common(MAX_PHRASES)]
        if keywords:
            spec["keywords"] = keywords
        if spec:
            data["intents"][intent] = spec
    calibration = Calibration(data, replies)
    _separation(calibration, commands)
    return calibration


def _separation(calibration: Calibration, commands: tuple[tuple[str, ...], ...]) -> None:
    """Judge every reply against the learned file without its own phrase; fill confusion and alike."""
    from voiceharness.expectations import _parse

    data = calibration.data
    intents = list(data["intents"])
    confusion = {intent: Counter() for intent in intents}
    alike: dict[tuple[str, str], str] = {}
    # The same phrase learned for two intents: they answer alike.
    for i, first in enumerate(intents):
        for second in intents[i + 1:]:
            shared = set(data["intents"][first].get("phrases", [])) & set(data["intents"][second].get("phrases", []))
            if shared:
                alike[(first, second)] = f"both answer {min(shared)!r}"
    phrase_count = Counter(_phrase(r, commands) for r in calibration.replies)
    for reply in calibration.replies:
        own = _phrase(reply, commands)
        trimmed = json.loads(json.dumps(data))
        spec = trimmed["intents"].get(reply.intent, {})
        if phrase_count[own] == 1 and own in spec.get("phrases", []):  # leave this reply's own phrase out
            spec["phrases"].remove(own)
            if not spec["phrases"]:
                del spec["phrases"]
        if not spec:
            trimmed["intents"][reply.intent] = {"keywords": ["\u2205"]}  # nothing else learned: a keyword never heard
        verdict = _parse("calibration", trimmed).judge(reply.transcript, reply.request_text)
        heard = verdict.intent or NONE
        confusion.setdefault(reply.intent, Counter())[heard] += 1
        # A reply judged as another intent: the two answer alike (an unjudged one shows in the matrix).
        if heard not in (NONE, reply.intent):
            pair = tuple(sorted((reply.intent, heard)))
            alike.setdefault(pair, f"a {reply.intent} reply {reply.transcript!r} was judged {heard}")
    calibration.confusion = {k: dict(v) for k, v in confusion.items()}
    calibration.alike = [(a, b, why) for (a, b), why in sorted(alike.items())]


def write_expectations(calibration: Calibration, path: str | Path) -> Path:
    """Write the learned file (and check that it loads, so a user never gets one that does not)."""
    path = Path(path)
    path.write_text(json.dumps(calibration.data, indent=2) + "\n", encoding="utf-8")
    load_expectations(path)
    return path


def report(calibration: Calibration) -> str:
    """The confusion matrix and the warnings, as printed."""
    intents = list(calibration.data["intents"])
    columns = [*intents, NONE]
    width = max([len(c) for c in columns] + [16])
    lines = [("How the calibrated expectations separate the replies heard (rows: the intent answered; "
             "columns: the judge's verdict, each reply without its own phrase):"),
             "".ljust(width) + "".join(c[:width].rjust(width + 1) for c in columns)]
    for intent in intents:
        row = calibration.confusion.get(intent, {})
        lines.append(intent.ljust(width) + "".join(str(row.get(c, 0)).rjust(width + 1) for c in columns))
    for first, second, why in calibration.alike:
        lines.append(f"WARNING: {first} and {second} answer alike: {why}. The judge cannot tell them apart; "
                     "edit the file (distinct phrases or keywords), or judge these intents from the gateway's metadata.")
    if not calibration.alike:
        lines.append("Every intent's replies were told apart.")
    return "\n".join(lines)


def hear_gateway(url: str, dialect: str, *, select: str, per_intent: int, repeats: int,
                 expectations: str = "") -> list[HeardReply]:
    """Play the sample through the gateway (one voice, one connection) and transcribe every reply."""
    from audio_corpus import load_corpus
    from voiceharness.listener import ReplyListener
    from voiceharness.replay import ReplayOptions, replay

    corpus = load_corpus(select=select)
    chosen, seen = [], Counter()
    for utterance in corpus:
        intent = utterance.expected_intent
        if intent and seen[intent] < per_intent and all(u.text != utterance.text for u in chosen):
            chosen.append(utterance)
            seen[intent] += 1
    if not chosen:
        raise UsageError(f"--select {select!r}: no corpus utterance with an expected intent")
    listener = ReplyListener(expectations or dialects.dialect(dialect).expectations, method="lm")
    listener.warm_up()

    def listen(samples, rate_hz: int, request_text: str):
        return listener.hear(samples, rate_hz, request_text=request_text)

    options = ReplayOptions.for_dialect(dialect)
    replies = []
    for round_number in range(repeats):
        print(f"calibrate: round {round_number + 1} of {repeats}: {len(chosen)} utterances", file=sys.stderr)
        for utterance, turn in replay(url, chosen, options=options, listen=listen, cross_check=True):
            record = turn.record
            transcript = record.reply_transcript
            if not transcript:
                continue
            # The gateway's own word on the intent wins where it gives one (metadata).
            intent = record.intent if record.intent_source == "metadata" and record.intent else utterance.expected_intent
            replies.append(HeardReply(intent, utterance.text, transcript))
    return replies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="voice-calibrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", required=True, help="the gateway's WebSocket URL (ws://host:port[/path])")
    parser.add_argument("--dialect", choices=sorted(dialects.DIALECTS), default="reference",
                        help="the gateway's dialect (default reference)")
    parser.add_argument("--out", required=True, help="the expectations file to write (JSON)")
    parser.add_argument("--select", default="kind:clean,kind:unknown",
                        help="corpus filter for the utterances played (default clean + unknown)")
    parser.add_argument("--per-intent", type=int, default=DEFAULT_PER_INTENT,
                        help=f"distinct utterances per intent (default {DEFAULT_PER_INTENT})")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help=f"times each utterance is played (default {DEFAULT_REPEATS})")
    args = parser.parse_args(argv)
    try:
        if args.per_intent < 1 or args.repeats < 1:
            raise UsageError("--per-intent and --repeats must be 1 or more")
        url = args.host if "/" in args.host.split("://", 1)[-1] else args.host.rstrip("/") + dialects.dialect(
            args.dialect).ws_path
        replies = hear_gateway(url, args.dialect, select=args.select, per_intent=args.per_intent, repeats=args.repeats)
        if not replies:
            raise UsageError(f"{url}: no reply had any words in it; is the gateway answering with speech?")
        base = load_expectations(dialects.dialect(args.dialect).expectations)
        commands = [" ".join(c) for c in base.command_words] or ["echo"]
        calibration = calibrate(replies, command_words=commands,
                                description=f"Calibrated by voice-calibrate from {len(replies)} replies of {url} "
                                            f"({args.dialect} dialect): review before use.")
        path = write_expectations(calibration, args.out)
    except HarnessError as error:
        print(f"voice-calibrate: error: {error}", file=sys.stderr)
        return 2
    print(report(calibration))
    print(f"wrote {path} ({sum(len(s.get('phrases', [])) for s in calibration.data['intents'].values())} phrases "
          f"for {len(calibration.data['intents'])} intents, from {len(replies)} replies); review it, then pass "
          f"--reply-expectations {path}")
    return 0 if calibration.separated else 1


if __name__ == "__main__":
    sys.exit(main())
