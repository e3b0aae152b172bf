"""What a gateway's replies are expected to say, per intent, and how well a transcript matches.

::

    expectations = load_expectations("smartjarvis")     # or "reference", or a path to a JSON file
    scores = expectations.score("you said hello world", request_text="echo hello world")
    scores["ECHO"]                                       # 1.0: every expected word was heard
    expectations.classify(scores)                        # "ECHO" (None when no intent is clear)

The file format (JSON; ``smartjarvis.json`` and ``reference.json`` beside this module are the
two that ship)::

    {
      "description": "free text (optional)",
      "command_words": ["echo", "repeat", "say", "tell me"],          (optional)
      "intents": {
        "GREETING": {"phrases": ["hello how can i help you"], "keywords": ["hello", "hi"]},
        "ECHO":     {"phrases": ["you said {request}"]},
        "TIME_NOW": {"phrases": ["the time is {time}", "it is {time} right now"]}
      }
    }

* ``intents`` maps an intent name (upper case, as the gateway's NLU names it) to ``phrases``
  and/or ``keywords`` (at least one of them, each a non-empty list of strings).
* A *phrase* is words the reply says in this order, written in lower-case words (numbers as
  words, contractions either way: "it's" and "it is" are the same). It may hold slots:

  - ``{request}`` — the words of the request after its command word: the harness knows what
    it said, so "echo hello world" expects "hello world". The command word is the first of
    ``command_words`` the request starts with (after an optional wake word "jarvis"). A
    request that starts with none of them ("hello jarvis") is no echo request, and the slot
    stands for any words, as it does when the request is not known; without
    ``command_words``, the whole request is expected.
  - ``{time}`` — a spoken clock time ("nine oh five a m", "ten thirty", "four o'clock").
  - ``{words}`` — any words (they neither count for nor against the phrase).

* A *keyword* is a word (or words) whose mere presence is evidence for the intent, weaker
  than a phrase: one keyword scores 0.5, two 0.75, three 0.875.

Scoring: each phrase is aligned to the transcript (the phrase as a whole, the transcript
locally, so a reply may say more than the phrase). A heard phrase word gains its weight
(1, or 0.5 for common function words such as "the", "is", "you"), a missed one gains nothing,
and a transcript word inserted inside the phrase costs :data:`INSERTION_COST`. An intent's
score is its best phrase's (or its keywords') share of the achievable weight, 0 to 1.
:meth:`Expectations.classify` picks the best intent when it scores at least
:data:`MIN_SCORE` and leads the runner-up by :data:`MIN_MARGIN`; otherwise None (the harness's
``unjudged``). docs/reply-judge.md has the measurements behind these numbers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from voiceharness.errors import UsageError

__all__ = [
    "BUILTIN",
    "CLOCK_NUMBER_WORDS",
    "INSERTION_COST",
    "MIN_MARGIN",
    "MIN_SCORE",
    "Expectations",
    "IntentExpectation",
    "load_expectations",
    "normalize_words",
    "request_words",
]

BUILTIN = ("smartjarvis", "reference")

# classify(): the best intent must score at least MIN_SCORE and lead the runner-up by
# MIN_MARGIN (measured on the espeak-ng tuning set, docs/reply-judge.md).
MIN_SCORE = 0.5
MIN_MARGIN = 0.1
# Cost of a transcript word inside a phrase that the phrase does not have, in word weights.
INSERTION_COST = 0.3
# Weight of common function words in a phrase: "the time is" should not be matched by the
# "the" and "is" of another sentence.
FUNCTION_WORD_WEIGHT = 0.5
_FUNCTION_WORDS = frozenset(
    ["a", "an", "the", "is", "are", "am", "be", "it", "i", "you", "me", "my", "your", "to", "of", "for", "with", "and", "or", "that", "this", "what", "can", "do", "did", "not", "in", "on", "at", "so"]
)
_TIME_WEIGHT = 2.0
_KEYWORD_BASE = 0.5  # keyword score = 1 - (1 - base) ** hits

_ONES = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
_TEENS = ["thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty"]
# A {time} slot starts with one of these and runs on over any clock word.
CLOCK_NUMBER_WORDS = frozenset(_ONES + _TEENS + _TENS + ["noon", "midnight"])
_CLOCK_WORDS = CLOCK_NUMBER_WORDS | {"oh", "o'clock", "oclock", "a", "p", "m", "am", "pm", "half", "quarter", "past"}

_SLOTS = ("request", "time", "words")
_SLOT_RE = re.compile(r"\{([^{}]*)\}")
_WAKE_WORD = "jarvis"
_CONTRACTIONS = {"can't": "can not", "cannot": "can not", "won't": "will not", "let's": "let us"}
_SUFFIXES = (("n't", " not"), ("'m", " am"), ("'re", " are"), ("'ve", " have"), ("'ll", " will"), ("'d", " would"))
# "it's", "what's", "that's"... (not o'clock, not a possessive we care about)
_IS_CONTRACTIONS = frozenset(["it's", "what's", "that's", "there's", "here's", "how's", "who's", "where's", "he's", "she's"])


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation, contractions expanded ("it's" -> "it is")."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    words: list[str] = []
    for word in text.split():
        word = word.strip("'")
        if not word:
            continue
        if word in _CONTRACTIONS:
            words.extend(_CONTRACTIONS[word].split())
            continue
        if word in _IS_CONTRACTIONS:
            words.extend([word[:-2], "is"])
            continue
        for suffix, replacement in _SUFFIXES:
            if word.endswith(suffix) and len(word) > len(suffix):
                words.extend((word[: -len(suffix)] + replacement).split())
                break
        else:
            words.append(word)
    return words


def request_words(request_text: str, command_words: tuple[tuple[str, ...], ...]) -> list[str]:
    """The words of a request after its command word ("echo hello world" -> hello world);
    none when ``command_words`` are given and the request starts with none of them."""
    words = normalize_words(request_text)
    if len(words) > 1 and words[0] == _WAKE_WORD:
        words = words[1:]
    for command in command_words:
        if tuple(words[: len(command)]) == command and len(words) > len(command):
            return words[len(command) :]
    # A request without a command word is no echo request: its words are not expected back.
    return [] if command_words else words


@dataclass(frozen=True)
class IntentExpectation:
    """One intent's phrases (as word/slot tokens; a slot is "{time}" etc.) and keywords."""

    phrases: tuple[tuple[str, ...], ...]
    keywords: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Expectations:
    """A loaded expectations file: intent -> :class:`IntentExpectation`."""

    source: str
    intents: Mapping[str, IntentExpectation]
    command_words: tuple[tuple[str, ...], ...] = ()
    description: str = ""

    def phrases_for(self, intent: str, request_text: str = "") -> list[list[str]]:
        """The intent's phrases with ``{request}`` filled in (``{words}`` when it is not known)."""
        request = request_words(request_text, self.command_words) if request_text else []
        filled = []
        for phrase in self.intents[intent].phrases:
            tokens: list[str] = []
            for token in phrase:
                if token == "{request}":
                    tokens.extend(request or ["{words}"])
                else:
                    tokens.append(token)
            filled.append(tokens)
        return filled

    def vocabulary(self, request_text: str = "") -> set[str]:
        """Every literal word the replies may say (the request's words included)."""
        words = {w for intent in self.intents for p in self.phrases_for(intent, request_text) for w in p}
        words |= {w for spec in self.intents.values() for k in spec.keywords for w in k}
        words |= {" ".join(k) for spec in self.intents.values() for k in spec.keywords}
        return {w for w in words if not w.startswith("{") and " " not in w}

    def score(self, transcript: str, request_text: str = "") -> dict[str, float]:
        """Each intent's evidence in ``transcript``, 0 (none) to 1 (a whole phrase heard)."""
        heard = normalize_words(transcript)
        scores = {}
        for intent, spec in self.intents.items():
            best = max((_phrase_score(p, heard) for p in self.phrases_for(intent, request_text)), default=0.0)
            hits = sum(1 for keyword in spec.keywords if _contains(heard, keyword))
            keyword_score = 1.0 - (1.0 - _KEYWORD_BASE) ** hits if hits else 0.0
            scores[intent] = round(max(best, keyword_score), 3)
        return scores

    def classify(self, scores: Mapping[str, float]) -> str | None:
        """The intent the scores point to, or None when none is clear enough."""
        ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
        if not ranked or ranked[0][1] < MIN_SCORE:
            return None
        if len(ranked) > 1 and ranked[0][1] - ranked[1][1] < MIN_MARGIN:
            return None
        return ranked[0][0]


def _contains(words: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tuple(words[i : i + n]) == phrase for i in range(len(words) - n + 1))


def _weight(token: str) -> float:
    if token == "{time}":
        return _TIME_WEIGHT
    if token == "{words}":
        return 0.0
    return FUNCTION_WORD_WEIGHT if token in _FUNCTION_WORDS else 1.0


def _phrase_score(phrase: list[str], heard: list[str]) -> float:
    """Share of the phrase's weight found in order in ``heard`` (alignment, see module doc).

    Dynamic programming over (phrase tokens consumed, transcript position): the whole phrase is
    aligned, the transcript locally (anything may come before and after the phrase).
    """
    total = sum(_weight(t) for t in phrase)
    if total <= 0 or not heard:
        return 0.0
    n, m = len(phrase), len(heard)
    minus_inf = float("-inf")
    # best[i][j]: best score with phrase[:i] aligned and the transcript's phrase span ending
    # before heard[j]; row 0 is free (the phrase may start anywhere).
    best = [[0.0] * (m + 1)] + [[minus_inf] * (m + 1) for _ in range(n)]
    for i in range(1, n + 1):
        token = phrase[i - 1]
        weight = _weight(token)
        row, previous = best[i], best[i - 1]
        for j in range(m + 1):
            # The phrase token was not heard (missed, or heard as another word: see below).
            score = previous[j]
            if j:
                word = heard[j - 1]
                if token == "{time}":
                    if word in CLOCK_NUMBER_WORDS:
                        score = max(score, previous[j - 1] + weight)
                    # A time runs on over clock words ("nine oh five a m") at no cost.
                    if word in _CLOCK_WORDS:
                        score = max(score, row[j - 1])
                elif token == "{words}":
                    score = max(score, previous[j - 1], row[j - 1])
                else:
                    gain = weight if word == token else 0.0  # a substitution gains nothing
                    score = max(score, previous[j - 1] + gain)
                if i < n:  # a word inserted inside the phrase
                    score = max(score, row[j - 1] - INSERTION_COST)
                else:  # after the whole phrase: the rest of the reply is free
                    score = max(score, row[j - 1])
            row[j] = score
    return max(0.0, best[n][m]) / total


def _fail(source: str, key: str, problem: str) -> UsageError:
    return UsageError(f"reply expectations {source}: {key}: {problem}")


def _string_list(source: str, key: str, value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _fail(source, key, 'must be a non-empty list of strings, e.g. ["hello how can i help you"]')
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise _fail(source, f"{key}[{index}]", f"must be a non-empty string, not {item!r}")
    return value


def _parse_phrase(source: str, key: str, text: str) -> tuple[str, ...]:
    for slot in _SLOT_RE.findall(text):
        if slot not in _SLOTS:
            raise _fail(
                source, key, f"unknown slot {{{slot}}} in {text!r}; use {{request}}, {{time}} or {{words}}"
            )
    if re.search(r"[0-9]", _SLOT_RE.sub(" ", text)):
        raise _fail(source, key, f"{text!r} holds digits: write numbers as words, or use {{time}} for a clock time")
    tokens: list[str] = []
    for index, part in enumerate(_SLOT_RE.split(text)):
        tokens.extend([f"{{{part}}}"] if index % 2 else normalize_words(part))
    if not any(t != "{words}" for t in tokens):
        raise _fail(source, key, f"{text!r} says nothing that can be checked: add words or a {{request}}/{{time}} slot")
    return tuple(tokens)


def _parse(source: str, data: object) -> Expectations:
    if not isinstance(data, dict):
        raise _fail(source, "top level", 'must be a JSON object like {"intents": {"GREETING": {"phrases": [...]}}}')
    unknown = set(data) - {"intents", "command_words", "description"}
    if unknown:
        raise _fail(source, min(unknown), "unknown key; the keys are intents, command_words, description")
    intents = data.get("intents")
    if not isinstance(intents, dict) or not intents:
        raise _fail(source, "intents", 'missing or empty: map each intent name to {"phrases": [...]} and/or {"keywords": [...]}')
    parsed: dict[str, IntentExpectation] = {}
    for name, spec in intents.items():
        key = f"intents.{name}"
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise _fail(source, key, "intent names are upper case, as the gateway sends them (e.g. GREETING, TIME_NOW)")
        if not isinstance(spec, dict):
            raise _fail(source, key, 'must be an object like {"phrases": ["..."], "keywords": ["..."]}')
        unknown = set(spec) - {"phrases", "keywords"}
        if unknown:
            raise _fail(source, f"{key}.{min(unknown)}", "unknown key; an intent has phrases and/or keywords")
        if not spec:
            raise _fail(source, key, "give phrases and/or keywords")
        phrases = tuple(
            _parse_phrase(source, f"{key}.phrases[{i}]", text)
            for i, text in enumerate(_string_list(source, f"{key}.phrases", spec["phrases"]) if "phrases" in spec else [])
        )
        keywords = []
        for i, text in enumerate(_string_list(source, f"{key}.keywords", spec["keywords"]) if "keywords" in spec else []):
            if "{" in text:
                raise _fail(source, f"{key}.keywords[{i}]", f"{text!r}: slots belong in phrases, not keywords")
            keywords.append(tuple(normalize_words(text)))
        parsed[name] = IntentExpectation(phrases, tuple(keywords))
    command_words = data.get("command_words", [])
    if command_words:
        command_words = _string_list(source, "command_words", command_words)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _fail(source, "description", "must be a string")
    return Expectations(source, parsed, tuple(tuple(normalize_words(c)) for c in command_words), description)


def load_expectations(path_or_name: str | Path) -> Expectations:
    """Load "smartjarvis", "reference" (shipped) or a JSON file; bad files raise UsageError."""
    if isinstance(path_or_name, str) and path_or_name in BUILTIN:
        source = f"{path_or_name} (built in)"
        text = resources.files(__name__).joinpath(f"{path_or_name}.json").read_text(encoding="utf-8")
    else:
        path = Path(path_or_name)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(
                f"reply expectations {source}: no such file; give a JSON file or one of {', '.join(BUILTIN)}"
            ) from None
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"reply expectations {source}: cannot be read ({error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"reply expectations {source}: not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    return _parse(source, data)
