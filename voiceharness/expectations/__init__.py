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
        "GREETING": {"phrases": ["hello how can i help you"], "keywords": ["hello", "hi"],
                     "related": ["good morning", "what can i do for you"]},
        "ECHO":     {"phrases": ["you said {request}"]},
        "TIME_NOW": {"phrases": ["the time is {time}", "it is {time} right now"]},
        "UNKNOWN":  {"phrases": ["sorry i did not understand"], "related": ["say that again"], "fallback": true}
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
  - ``{time}`` — a spoken clock time ("nine oh five a m", "ten thirty", "four o'clock", on a
    24-hour clock "eighteen thirty", "zero nine hundred").
  - ``{words}`` — any words (they neither count for nor against the phrase).

* A *keyword* is a word (or words) whose mere presence is evidence for the intent: a word
  that tells this intent's replies from the others' (the words of every phrase count too,
  less).
* ``related`` (optional) — more words and phrases a reply of this intent may say in other
  wordings than the gateway's ("forecast", "rain" for weather; "say that again" for a request
  not understood). They count as keywords in a transcript; unlike keywords they are not put
  into the ``grammar`` method's grammar, which forces any audio into one of its words.
* ``fallback: true`` (optional, on one intent) — the reply to a request the gateway did not
  understand. Its words (an apology, "say that again") are said about anything, so they yield
  to a subject: when another intent's keyword, clock time or echoed request is heard in the
  same reply, the fallback's score is multiplied by ``1 - FALLBACK_YIELD`` ("sorry, I can't
  check the weather" is a weather reply).

Scoring (:meth:`Expectations.judge`) weighs the evidence a person reading the transcript would
use, so that a reply worded otherwise than the phrases (another template, a paraphrase, a word
misheard or missing, fillers) is still judged:

* **phrases, whole or in part** — each phrase is aligned to the transcript (the phrase as a
  whole, the transcript locally, so a reply may say more than the phrase). A heard phrase word
  gains its weight (1, or 0.5 for common function words such as "the", "is", "you"), a missed
  one gains nothing, and a transcript word inserted inside the phrase costs
  :data:`INSERTION_COST`; the best phrase's share of its weight is the evidence.
* **words anywhere** — every word of the transcript that belongs to an intent's phrases or
  keywords, weighted by how many intents use it (a word of one intent only counts fully, one
  shared by two counts half), a keyword three times: which intent's words dominate.
* **slots** — a clock time anywhere, in any form a transcript gives it ("nine oh nine a m",
  "9:09", "twenty past nine", "a quarter to six"), for an intent whose phrases say
  ``{time}``; the request's own words said back, for one whose phrases say ``{request}``. An
  intent every phrase of which carries the slot is weak when the slot is not heard: a reply
  with no clock time in it is hardly the time. Words said back from the request count for
  ECHO only ("you said what is the weather" is no weather reply).

* **what is said aside** — a keyword a refusal *offers* ("I can't control the lights. Want the
  weather instead?", "... but I can tell you the time") is not the reply's subject: after a
  negation, with an offer between them or "instead" / "if you like" after it, it names no intent
  and counts for none, and the offer is evidence of the fallback (:data:`OFFER_WEIGHT`). The
  published weather replies refuse the weather itself ("I can't check the weather right now"),
  with the keyword inside the refusal: they stay weather replies. The subjects listed after a
  refusal, two or more, are offered too ("I can't book flights. I can tell you the time, check the
  weather..."), and a refusal may be said without a negation ("outside my reach", "off the
  table"). "time" in an idiom ("one more time", "next time") names no clock, nor does a clock time
  that says when something happens ("thunderstorms after five pm": :func:`scheduled_times`).

These are combined per intent (each a probability-like 0..1, joined as independent
evidence: 1 - (1 - a)(1 - b)...) into a score from 0 to 1. An intent named by keywords alone
(no slot in its phrases) whose keywords are not heard scores :data:`SUBJECTLESS_DISCOUNT` less:
its phrases without its subject may be any reply's ("... is not available at the moment, is
there something else i can help with"). The best intent is the verdict when
it scores at least :data:`MIN_SCORE` and leads the runner-up by :data:`MIN_MARGIN`; otherwise
the reply is unjudged (None) — a reply that names two intents, or too little of any, is not
guessed. Thresholds and weights were tuned on the tuning set of ``bench/judge_sets/`` and are
reported on its held-out set (docs/reply-judge.md). A reply these rules leave unjudged may be
decided by a model learned from transcripts (:mod:`voiceharness.expectations.learned`; the
listener asks it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from voiceharness.errors import UsageError

__all__ = [
    "BUILTIN",
    "CLOCK_NUMBER_WORDS",
    "INSERTION_COST",
    "MIN_MARGIN",
    "MIN_SCORE",
    "QUANTITY",
    "Expectations",
    "HeardWords",
    "IntentExpectation",
    "Verdict",
    "clock_span",
    "clock_strength",
    "load_expectations",
    "normalize_words",
    "request_words",
]

BUILTIN = ("smartjarvis", "reference")

# The verdict: the best intent must score at least MIN_SCORE and lead the runner-up by
# MIN_MARGIN, else the reply is unjudged (tuned on bench/judge_sets/tuning.tsv; a wrong intent
# must be rarer than an unjudged reply: docs/reply-judge.md).
MIN_SCORE = 0.5
MIN_MARGIN = 0.25
# Cost of a transcript word inside a phrase that the phrase does not have, in word weights.
INSERTION_COST = 0.3
# Weight of common function words in a phrase: "the time is" should not be matched by the
# "the" and "is" of another sentence.
FUNCTION_WORD_WEIGHT = 0.5
_FUNCTION_WORDS = frozenset(
    ["a", "an", "the", "is", "are", "am", "be", "it", "i", "you", "me", "my", "your", "to", "of", "for", "with", "and", "or", "that", "this", "what", "can", "do", "did", "not", "in", "on", "at", "so"]
)
# Words too common to tell intents apart when heard anywhere (they still count inside a phrase).
_COMMON_WORDS = _FUNCTION_WORDS | frozenset(
    ["there", "here", "how", "would", "could", "will", "have", "has", "was", "were", "by", "but", "if", "we",
     "us", "our", "some", "something", "just", "now", "right", "get", "got", "let", "like", "want", "may",
     "please", "sorry", "okay", "ok", "well", "sure", "oh", "um", "uh", "hmm", "no", "yes", "all", "any",
     # Said in a reply of any intent: "the weather report is missing today", "all good", "good luck".
     # A greeting says them inside its phrases and related words ("good morning", "how can I help
     # you today"), where they still count.
     "today", "good"]
)
_TIME_WEIGHT = 2.0
# Evidence weights (each 0..1, joined as independent evidence).
WORDS_WEIGHT = 0.8  # words anywhere: one distinctive word -> 0.4, a keyword -> 0.7, two keywords -> 0.79
KEYWORD_FACTOR = 3.0  # a keyword counts as this many distinctive words
TIME_SLOT_WEIGHT = 0.8  # a clock time heard, for an intent whose phrases say {time}
ECHO_SLOT_WEIGHT = 0.8  # the request's words said back, for an intent whose phrases say {request}
# An intent every phrase of which carries {time} (or {request}) scores this share when that
# slot is not heard.
MISSING_SLOT_FACTOR = 0.7
# A phrase matched by its function words alone ("you ... me" of "you told me") counts this share.
NO_CONTENT_FACTOR = 0.3
# A fallback intent (the gateway did not understand) yields to a named subject: when another
# intent's keyword, its clock time or the request said back is heard, the fallback's score is
# multiplied by 1 - FALLBACK_YIELD ("sorry, I can't check the weather" is about the weather).
FALLBACK_YIELD = 0.3
# An intent named by keywords alone ("weather", "hello") whose keywords are not heard: its phrases
# and words count this much less. The published gateway's weather replies are refusals ("weather
# information is not available at the moment, is there something else i can assist you with"):
# without "weather" in it, the same reply is any refusal ("i'm not able to translate yet, is
# there something else i can help with"). Chosen by leaving out one retired held-out set at a time
# (docs/reply-judge.md, round 8).
SUBJECTLESS_DISCOUNT = 0.4
# "N minutes past/to" with the hour misheard still says a clock time, less surely.
MINUTES_WITHOUT_HOUR_STRENGTH = 0.8
# A single number word is weak evidence of a clock time ("that one", "for two").
LONE_NUMBER_STRENGTH = 0.3
# The request's words count as said back when this share of them is heard in order.
ECHO_HEARD_SHARE = 0.6
# A subject offered after a refusal is not what the reply is about ("I can't control the lights.
# Want the weather instead?" refuses; "I can't check the weather right now" is a weather reply):
# an intent's keyword after a negation with an offer between them ("but", "want", "I can"...), or
# with "instead" / "if you like" within OFFER_AFTER_WORDS after it, is *offered*. An offered
# keyword neither names its intent nor counts for it, and a refusal that offers something is
# evidence of the fallback, OFFER_WEIGHT (round 11; docs/reply-judge.md). Since round 13 also the
# keywords of two subjects or more listed after a refusal ("I can't book flights. I can tell you
# the time, check the weather or repeat something back").
OFFER_WEIGHT = 0.5
OFFER_AFTER_WORDS = 4
# Words of a refusal ("sorry", "afraid", "unfortunately" since round 14).
_NEGATIONS = frozenset(["not", "unable", "beyond", "never", "nope", "no", "sorry", "afraid", "unfortunately"])
# A refusal said without a negation word ("out of my league", "off the table", "outside my reach").
_REFUSALS = (("outside", "my"), ("outside", "what", "i"), ("out", "of", "my"), ("off", "the", "table"),
             ("off", "limits"), ("above", "my"))
# "... but I can't tell you the time" after a refusal is "but I can" misheard: an offer, no refusal.
_OFFERS_MISHEARD = (("but", "i", "can"), ("but", "i", "could"))
_OFFERS_BEFORE = (("want",), ("wanna",), ("instead",), ("how", "about"), ("would", "you", "like"),
                  ("could",), ("happy", "to"), ("glad", "to"), ("maybe",), ("though",), ("however",),
                  ("shall", "i"), ("should", "i"), ("perhaps",), ("fancy",), ("try", "asking"), ("ask", "me"),
                  ("i", "can"), ("i", "know"), ("good", "for"), ("stick", "to"), ("i", "handle"),
                  ("limited", "to"),
                  ("if", "you", "want"), ("if", "you", "like"), ("if", "that", "helps"),
                  *((*offer, "not") for offer in _OFFERS_MISHEARD))
_OFFERS_AFTER = (("instead",), ("if", "you", "like"), ("if", "you", "want"), ("though",), ("if", "that", "helps"),
                 ("are", "all", "i"), ("is", "all", "i"), ("if", "it", "helps"))
# "time" after one of these names no clock ("one more time", "any other time", "next time", "take
# your time"): it is no TIME_NOW keyword there (round 11).
_NOT_A_CLOCK_BEFORE_TIME = frozenset(["more", "other", "another", "next", "this", "some", "any", "every", "each",
                                      "first", "last", "same", "spare", "free", "your", "good", "nice",
                                      "great", "fun", "no", "in", "on"])

# Said before a command word ("can you repeat ...", "please say ...").
_POLITE_OPENINGS = (("can", "you", "please"), ("could", "you", "please"), ("would", "you", "please"), ("can", "you"),
                    ("could", "you"), ("would", "you"), ("will", "you"), ("please",))

_ONES = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
_TEENS = ["thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty"]
# A {time} slot starts with one of these and runs on over any clock word.
CLOCK_NUMBER_WORDS = frozenset(_ONES + _TEENS + _TENS + ["noon", "midnight"])
_CLOCK_WORDS = CLOCK_NUMBER_WORDS | {"oh", "o'clock", "oclock", "a", "p", "m", "am", "pm", "half", "quarter", "past"}
# What a clock time is made of, anywhere in a transcript ("five minutes past one", "a quarter
# to six", "nine oh nine a m", "ten in the morning").
_CLOCK_MARKERS = frozenset(["o'clock", "oclock", "am", "pm", "noon", "midnight"])
_CLOCK_RELATIONS = frozenset(["past", "to", "half", "quarter", "after", "before"])
_HOUR_RELATIONS = frozenset(["past", "after", "before"])
# A clock time after one of these says when something happens (scheduled_times), unless the word
# before it says it is now ("it's just after nine", "a little before ten").
_SCHEDULE_RELATIONS = frozenset(["after", "by", "until", "till", "before", "from"])
_NOW_BEFORE_RELATION = frozenset(["is", "just", "little", "shortly", "right", "bit", "it", "now", "somewhat"])
_SCHEDULE_AFTER = frozenset(["tonight", "tomorrow", "overnight"])
# A hedge between the relation and the time leaves it a schedule ("clearing by about ten").
_SCHEDULE_HEDGES = frozenset(["about", "around", "roughly", "approximately"])
# A greeting's "what do you need" as the language model hears it, after "whether" (round 14).
_WHAT_YOU_NEED_HEARD = frozenset([("you", "need"), ("do", "you", "need"), ("you", "need", "from", "me")])
_DIGITS = frozenset(_ONES[:9])
# A zero digit as a voice says it: "nine oh five", espeak-ng's "six zero seven".
_ZERO_WORDS = frozenset(["oh", "zero"])
_ZERO_MINUTES = [[first, second] for first in _ZERO_WORDS for second in _ZERO_WORDS]  # ":00" said
_HOURS = frozenset(_ONES)
_MINUTES = frozenset(_ONES + _TEENS + _TENS)
# The hour of a 24-hour clock time said as words (13-23, "oh nine", "zero nine"): a time only with
# minutes or "hundred" after it ("eighteen thirty", "twenty two fifteen", "zero nine hundred").
_HOURS_24 = frozenset(_TEENS)
# A number said with a unit after it ("twenty three degrees", "eighty five percent", "twenty five
# kilometers per hour") or a sign before it ("minus four") is a quantity, never a clock time: the
# scorer reads it as QUANTITY, which neither fills a {time} slot nor counts as a time heard
# ("it's twenty three degrees outside at the moment" is no "it's {time} at the moment").
QUANTITY = "<quantity>"
_QUANTITY_UNITS = frozenset([
    "degree", "degrees", "percent", "celsius", "fahrenheit", "centigrade", "kelvin", "kilometer", "kilometers",
    "kilometre", "kilometres", "mile", "miles", "mph", "knot", "knots", "meter", "meters", "metre", "metres",
    "centimeter", "centimeters", "centimetre", "centimetres", "millimeter", "millimeters", "millimetre",
    "millimetres", "inch", "inches", "foot", "feet", "per",
])
_QUANTITY_SIGNS = frozenset(["minus", "negative", "plus"])
_NUMBER_WORDS = CLOCK_NUMBER_WORDS - {"noon", "midnight"} | {
    "zero", "sixty", "seventy", "eighty", "ninety", "hundred", "thousand"}
_NUMBER_HOMOPHONES = {"for": "four", "to": "two", "too": "two", "won": "one", "ate": "eight"}
_DAY_PARTS = frozenset(["morning", "afternoon", "evening", "night"])

_SLOTS = ("request", "time", "words")
_SLOT_RE = re.compile(r"\{([^{}]*)\}")
_WAKE_WORD = "jarvis"
_CONTRACTIONS = {"can't": "can not", "cannot": "can not", "won't": "will not", "let's": "let us"}
_SUFFIXES = (("n't", " not"), ("'m", " am"), ("'re", " are"), ("'ve", " have"), ("'ll", " will"), ("'d", " would"))
# "it's", "what's", "that's"... (not o'clock, not a possessive we care about)
_IS_CONTRACTIONS = frozenset(["it's", "what's", "that's", "there's", "here's", "how's", "who's", "where's", "he's", "she's"])
_CLOCK_DIGITS_RE = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_NUMBER_RE = re.compile(r"\b\d+\b")
_AM_PM_RE = re.compile(r"\b([ap])\.?\s?m\b\.?")


def _number_words(number: int) -> list[str]:
    """0-99 as words ("forty five"); larger numbers digit by digit."""
    if 1 <= number <= 12:
        return [_ONES[number - 1]]
    if 13 <= number <= 19:
        return [_TEENS[number - 13]]
    if 20 <= number <= 59 or 60 <= number <= 99:
        tens = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"][number // 10 - 2]
        return [tens] + ([_ONES[number % 10 - 1]] if number % 10 else [])
    if number == 0:
        return ["zero"]
    return [w for digit in str(number) for w in _number_words(int(digit))]


def _clock_words(match: re.Match) -> str:
    hour, minute = int(match.group(1)), int(match.group(2))
    if minute == 0:
        # "14:00" is said "fourteen hundred" on a 24-hour clock, "2:00" "two o'clock".
        return " ".join([*_number_words(hour), "hundred" if hour > 12 else "o'clock"])
    minutes = ["oh", *_number_words(minute)] if minute < 10 else _number_words(minute)
    return " ".join(_number_words(hour) + minutes)


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation, contractions expanded ("it's" -> "it is"), numbers
    and clock times in digits as a voice says them ("9:09 AM" -> nine oh nine am)."""
    text = text.lower().replace("\u2019", "'")
    text = _CLOCK_DIGITS_RE.sub(_clock_words, text)
    text = _AM_PM_RE.sub(lambda m: f" {m.group(1)}m ", text)
    text = _NUMBER_RE.sub(lambda m: " ".join(_number_words(int(m.group()))), text)
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
    # "a m" / "p m" (a voice's, or a recogniser's, spelling of AM/PM) as one word
    merged: list[str] = []
    for word in words:
        if word == "m" and merged and merged[-1] in ("a", "p"):
            merged[-1] += "m"
        else:
            merged.append(word)
    return merged


_HOMOPHONE_CACHE: dict[frozenset[str], dict[str, str]] = {}


def _quantities(words: list[str], keep: frozenset[int]) -> list[str]:
    """``words`` with each run of number words that has a unit after it or a sign before it
    written as :data:`QUANTITY` (positions in ``keep``, the request said back, as they are)."""
    found = list(words)
    n = len(words)
    i = 0
    while i < n:
        if words[i] not in _NUMBER_WORDS:
            i += 1
            continue
        end = i
        while end < n and words[end] in _NUMBER_WORDS:
            end += 1
        if (i and words[i - 1] in _QUANTITY_SIGNS) or (end < n and words[end] in _QUANTITY_UNITS):
            for k in range(i, end):
                if k not in keep:
                    found[k] = QUANTITY
        i = end
    return found


class HeardWords(NamedTuple):
    """A transcript as the scorer reads it (:meth:`Expectations.words_heard`)."""

    words: list[str]  # normalized, homophones of the expectations' words written as those, quantities as QUANTITY
    request: list[str]  # the request's words, its command words left out
    echoed: frozenset[int]  # positions in ``words`` where the request is said back
    echo_share: float  # how much of the request is heard there, 0 to 1
    # Positions of words said aside from the reply's subject: keywords offered after a refusal
    # (:data:`OFFER_WEIGHT`), "time" in an idiom that names no clock ("one more time"), a clock
    # time that says when something happens (:func:`scheduled_times`), and "whether" in a
    # greeting's "what do you need" heard as "whether you need".
    aside: frozenset[int] = frozenset()
    offered: frozenset[int] = frozenset()  # those of them offered after a refusal


def _homophones(vocabulary: frozenset[str]) -> dict[str, str]:
    """word -> the vocabulary word it sounds exactly like ("whether" -> "weather", "high" -> "hi"),
    from the pronunciation dictionary of pocketsphinx's en-us model; a recogniser writes either.
    Empty when the dictionary is not installed."""
    cached = _HOMOPHONE_CACHE.get(vocabulary)
    if cached is not None:
        return cached
    mapping: dict[str, str] = {}
    try:
        from pocketsphinx import get_model_path

        lines = Path(get_model_path("en-us/cmudict-en-us.dict")).read_text(encoding="utf-8").splitlines()
    except (ImportError, OSError):
        lines = []
    entries = []
    for line in lines:
        word, _, phones = line.partition(" ")
        entries.append((word.split("(")[0], phones.strip()))
    sounds = {phones: word for word, phones in entries if word in vocabulary}
    for word, phones in entries:
        if word not in vocabulary and phones in sounds and word not in CLOCK_NUMBER_WORDS:
            mapping.setdefault(word, sounds[phones])
    _HOMOPHONE_CACHE[vocabulary] = mapping
    return mapping


def _stem(word: str) -> str:
    """A light stem for matching words anywhere: checking/checked/checks -> check."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def clock_strength(words: list[str], ignore: frozenset[int] | set[int] = frozenset()) -> float:
    """How surely ``words`` (normalized) say a clock time: 1 for a time a voice says ("nine oh
    nine am", "nine thirty", "eight o'clock", "twenty past nine", "a quarter to six", "ten in
    the morning", "eighteen thirty", "fourteen hundred"), :data:`LONE_NUMBER_STRENGTH` for a lone number ("it's nine"), 0 for none
    ("one two three" is no time). Positions in ``ignore`` do not count (an echoed request)."""
    words = _mended([w if i not in ignore else "" for i, w in enumerate(words)])
    return max((strength for _, _, strength in _times(words)), default=0.0)


def clock_span(words: list[str]) -> tuple[int, int] | None:
    """Where ``words`` (normalized) say a clock time (start, end), the first one; None when none."""
    return next(((start, end) for start, end, strength in _times(_mended(words)) if strength >= 1.0), None)


def scheduled_times(words: list[str]) -> frozenset[int]:
    """Positions of the clock times in ``words`` (normalized) that say when something happens,
    not what time it is: after "after", "by", "until", "before" or "from" (a hedge between them
    too: "by about ten") with no "it's" or "just" before it ("thunderstorms after five pm",
    "clearing by noon"; not "it's just after nine"), or
    followed by "tonight", "tomorrow", "overnight" ("after nine tonight")."""
    words = _mended(words)
    n = len(words)
    found: set[int] = set()
    for start, end, strength in _times(words):
        if strength < 0.5:
            continue
        relation = start if words[start] in _HOUR_RELATIONS else start - 1
        if relation > 0 and words[relation] in _SCHEDULE_HEDGES:
            relation -= 1
        before = words[relation - 1] if relation > 0 else ""
        said_when = relation >= 0 and words[relation] in _SCHEDULE_RELATIONS and before not in _NOW_BEFORE_RELATION \
            and before not in CLOCK_NUMBER_WORDS and before not in ("minutes", "minute", "quarter", "half")
        if said_when or (end < n and words[end] in _SCHEDULE_AFTER):
            found.update(range(start, end))
    return frozenset(found)


def _mended(words: list[str]) -> list[str]:
    """``words`` with the numbers a recogniser wrote as homophones put back."""
    words = list(words)
    n = len(words)
    # A recogniser writes a number as its homophone ("it's for thirty", "won fifteen", "nine or
    # nine"): next to a number (other than "one", itself the commonest stray) it is that number.
    for i, word in enumerate(words):
        neighbours = [words[j] for j in (i - 1, i + 1) if 0 <= j < n]
        relation = word == "to" and i and words[i - 1] in (_MINUTES | {"quarter", "half", "minutes", "minute"})
        if word in _NUMBER_HOMOPHONES and not relation and any(
                w in CLOCK_NUMBER_WORDS and w != "one" for w in neighbours):
            words[i] = _NUMBER_HOMOPHONES[word]
        elif word == "or" and i and words[i - 1] in _HOURS and i + 1 < n and words[i + 1] in _DIGITS:
            words[i] = "oh"
    return words


def _times(words: list[str]) -> list[tuple[int, int, float]]:
    """Every clock time or lone number in ``words`` (homophones already mended): (start, end, strength)."""
    n = len(words)
    found = []
    for i, word in enumerate(words):
        hour_24 = _hour_24_length(words, i)
        if hour_24:
            after = i + hour_24
            minutes = _minute_length(words, after) or int(words[after : after + 1] == ["hundred"])
            if minutes:
                after += minutes
                found.append((i, after + (words[after : after + 1] == ["hours"]), 1.0))
                continue
        if word in _HOURS:
            after = i + 1 + _minute_length(words, i + 1)
            marker = _marker_length(words, after)
            if after > i + 1 or marker:
                found.append((i, after + marker, 1.0))
                continue
        if word in _MINUTES or word in ("quarter", "half"):
            after = i + 1 + (word in _TENS and words[i + 1 : i + 2] != [] and words[i + 1] in _DIGITS)
            after += words[after : after + 1] in (["minutes"], ["minute"])
            if after < n and words[after] in _CLOCK_RELATIONS and after + 1 < n and words[after + 1] in _HOURS:
                start = i - 1 if i and words[i - 1] == "a" else i
                found.append((start, after + 2 + _marker_length(words, after + 2), 1.0))
                continue
            # "five minutes past <a word misheard>": minutes and a relation say a clock time without the hour.
            if (after > i + 1 or word in ("quarter", "half")) and after < n and words[after] in _CLOCK_RELATIONS | {"passed"}:
                found.append((i, after + 1, MINUTES_WITHOUT_HOUR_STRENGTH))
                continue
        # "... zero zero pm", "... oh five a m": minutes that can only be minutes, and the half
        # of the day, with the hour misheard (espeak-ng's "7:00 PM" heard as "instantly zero
        # zero pm"; "fifteen am" may be "15 km/h" misheard).
        minutes = _minute_length(words, i) if word in _ZERO_WORDS else 0
        if minutes and words[i + minutes : i + minutes + 1] in (["am"], ["pm"]):
            found.append((i, i + minutes + 1, MINUTES_WITHOUT_HOUR_STRENGTH))
            continue
        # "just after nine", "a little past ten", "shortly before six": the hour said, the minutes
        # not (the relation before an hour: "to" is left out, "to one" is said about anything).
        if word in _HOUR_RELATIONS and i + 1 < n and words[i + 1] in _HOURS:
            found.append((i, i + 2 + _marker_length(words, i + 2), MINUTES_WITHOUT_HOUR_STRENGTH))
            continue
        if word in ("noon", "midnight"):
            found.append((i, i + 1, 0.6))
        elif word in CLOCK_NUMBER_WORDS:
            found.append((i, i + 1, LONE_NUMBER_STRENGTH))
    return found


def _hour_24_length(words: list[str], i: int) -> int:
    """How many words at ``i`` say the hour of a 24-hour clock that a 12-hour one has not
    ("eighteen", "twenty two", "oh nine", "zero nine"), or 0. "twenty" alone is 20 (hours 21-23
    are "twenty" and a digit up to three); an hour up to twelve is read by :func:`_times` itself."""
    word, following = words[i], words[i + 1 : i + 2]
    if word in _HOURS_24:
        return 1
    if word == "twenty":
        return 2 if following and following[0] in ("one", "two", "three") else 1
    if word in _ZERO_WORDS and following and following[0] in _DIGITS:
        return 2
    return 0


def _minute_length(words: list[str], i: int) -> int:
    """How many words at ``i`` say the minutes of a clock time ("oh nine", "zero nine" as espeak-ng reads
    ":09", "thirty", "forty five"), or 0."""
    if i >= len(words):
        return 0
    if words[i] in _ZERO_WORDS and words[i + 1 : i + 2] and words[i + 1] in _DIGITS:
        return 2
    if words[i : i + 2] in _ZERO_MINUTES:
        return 2
    if words[i] in _TENS:
        return 2 if words[i + 1 : i + 2] and words[i + 1] in _DIGITS else 1
    return 1 if words[i] in ("ten", "eleven", "twelve", *_TEENS) else 0


def _marker_length(words: list[str], i: int) -> int:
    """How many words at ``i`` say "am", "pm", "o'clock", "in the morning" (afternoon, evening) or "at night"."""
    if i < len(words) and words[i] in ("am", "pm", "o'clock", "oclock"):
        return 1
    if words[i : i + 2] == ["at", "night"]:
        return 2
    if words[i : i + 2] == ["in", "the"] and words[i + 2 : i + 3] and words[i + 2] in _DAY_PARTS:
        return 3
    return 0


def request_words(request_text: str, command_words: tuple[tuple[str, ...], ...]) -> list[str]:
    """The words of a request after its command word ("echo hello world" -> hello world);
    none when ``command_words`` are given and the request starts with none of them."""
    words = normalize_words(request_text)
    if len(words) > 1 and words[0] == _WAKE_WORD:
        words = words[1:]
    # "can you repeat ...", "could you please say ...": the command word after a polite opening.
    polite = next((len(p) for p in _POLITE_OPENINGS if tuple(words[: len(p)]) == p and len(words) > len(p) + 1), 0)
    if polite and any(tuple(words[polite : polite + len(c)]) == c for c in command_words):
        words = words[polite:]
    for command in command_words:
        if tuple(words[: len(command)]) == command and len(words) > len(command):
            return words[len(command) :]
    # A request without a command word is no echo request: its words are not expected back.
    return [] if command_words else words


@dataclass(frozen=True)
class IntentExpectation:
    """One intent's phrases (as word/slot tokens; a slot is "{time}" etc.) and keywords."""

    phrases: tuple[tuple[str, ...], ...]
    keywords: tuple[tuple[str, ...], ...]  # the file's keywords and related words: evidence in a transcript
    fallback: bool = False
    # The file's keywords alone: what a decoder's grammar or keyword search is built from
    # ("related" words left out: a grammar forces any audio into one of its words).
    search_keywords: tuple[tuple[str, ...], ...] = ()

    def says_in_every_phrase(self, slot: str) -> bool:
        return bool(self.phrases) and all(slot in phrase for phrase in self.phrases)

    def says(self, slot: str) -> bool:
        return any(slot in phrase for phrase in self.phrases)


@dataclass(frozen=True)
class Verdict:
    """What a transcript says: ``intent`` (None: unjudged), its score, the runner-up and its
    score (so a reader sees why), and every intent's score. ``heard_score`` is how much of any
    intent was heard: the best score before :data:`SUBJECTLESS_DISCOUNT` (which says which intent,
    not how much); the best score when not given."""

    intent: str | None
    score: float
    runner_up: str
    runner_up_score: float
    scores: dict[str, float]
    heard_score: float | None = None

    def __post_init__(self) -> None:
        if self.heard_score is None:
            object.__setattr__(self, "heard_score", max(self.scores.values(), default=0.0))


@dataclass(frozen=True)
class Expectations:
    """A loaded expectations file: intent -> :class:`IntentExpectation`."""

    source: str
    intents: Mapping[str, IntentExpectation]
    command_words: tuple[tuple[str, ...], ...] = ()
    description: str = ""

    def phrases_for(self, intent: str, request_text: str = "", *, open_request: bool = True) -> list[list[str]]:
        """The intent's phrases with ``{request}`` filled in (``{words}`` when it is not known).

        ``open_request=False`` leaves out a phrase with ``{request}`` when the request is known
        and has no command word (no echo is expected: "you said <anything>" would fit any reply).
        """
        request = request_words(request_text, self.command_words) if request_text else []
        no_echo = not open_request and bool(request_text) and bool(self.command_words) and not request
        filled = []
        for phrase in self.intents[intent].phrases:
            if no_echo and "{request}" in phrase:
                continue
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

    def _distinctive_words(self) -> frozenset[str]:
        """The phrases' and keywords' words that are not function words, slots or clock words."""
        words = {t for spec in self.intents.values() for p in spec.phrases for t in p}
        words |= {t for spec in self.intents.values() for k in spec.keywords for t in k}
        return frozenset(w for w in words if not w.startswith("{") and w not in _FUNCTION_WORDS
                         and w not in _CLOCK_WORDS)

    def _word_weights(self) -> dict[str, dict[str, float]]:
        """intent -> {stemmed distinctive word: its weight}: 1 / (intents using it), x KEYWORD_FACTOR
        for a keyword (cached on the instance)."""
        cached = self.__dict__.get("_weights")
        if cached is not None:
            return cached
        uses: dict[str, dict[str, bool]] = {}
        for intent, spec in self.intents.items():
            for phrase in spec.phrases:
                for token in phrase:
                    if not token.startswith("{") and token not in _COMMON_WORDS:
                        uses.setdefault(_stem(token), {}).setdefault(intent, False)
            for keyword in spec.keywords:
                if len(keyword) == 1 and keyword[0] not in _FUNCTION_WORDS:
                    uses.setdefault(_stem(keyword[0]), {})[intent] = True
        weights: dict[str, dict[str, float]] = {intent: {} for intent in self.intents}
        for word, intents in uses.items():
            for intent, is_keyword in intents.items():
                weights[intent][word] = (KEYWORD_FACTOR if is_keyword else 1.0) / len(intents)
        object.__setattr__(self, "_weights", weights)  # frozen dataclass: a private cache
        return weights

    def words_heard(self, transcript: str, request_text: str = "") -> HeardWords:
        """The transcript's words as the scorer reads them: normalized, a word that sounds exactly
        like one of these expectations' distinctive words written as that word ("whether" ->
        "weather"), with the request's words and where they are said back."""
        heard = normalize_words(transcript)
        request = request_words(request_text, self.command_words) if request_text else []
        if not heard:
            return HeardWords([], request, frozenset(), 0.0)
        sounds_like = _homophones(self._distinctive_words())
        # "what do you need" heard as "whether you need" at the end of a reply: no weather word.
        misheard_what = frozenset(i for i, word in enumerate(heard) if word == "whether"
                                  and tuple(heard[i + 1 :]) in _WHAT_YOU_NEED_HEARD)
        heard = [sounds_like.get(word, word) for word in heard]
        echoed, echo_share = _echoed_span(heard, request)
        heard = _quantities(heard, echoed)
        offered = self._offered(heard, echoed)
        idioms = frozenset(i for i, word in enumerate(heard)
                           if word == "time" and i and heard[i - 1] in _NOT_A_CLOCK_BEFORE_TIME and i not in echoed)
        scheduled = scheduled_times([w if i not in echoed else "" for i, w in enumerate(heard)])
        return HeardWords(heard, request, echoed, echo_share, offered | idioms | scheduled | misheard_what, offered)

    def _offered(self, heard: list[str], echoed: frozenset[int]) -> frozenset[int]:
        """Positions of the keywords of ``heard`` (outside the request said back) that are offered
        after a refusal (:data:`OFFER_WEIGHT`): with an offer word between the refusal and the
        keyword or just after the keyword, or in a list of what the assistant can do (keywords of
        two subjects or more after the refusal: "I can't book flights. I can tell you the time,
        check the weather or repeat something back")."""
        negations = sorted({i for i, w in enumerate(heard) if w in _NEGATIONS and i not in echoed}
                           | {i + len(phrase) - 1 for phrase in _REFUSALS for i in range(len(heard) - len(phrase) + 1)
                              if tuple(heard[i : i + len(phrase)]) == phrase and i not in echoed})
        stems = [_stem(w) for w in heard]
        if not negations:
            # No refusal heard ("I can't" heard as "I can"), but "I can" and three subjects or more
            # after it: a list of what the assistant can do, as a refusal gives it.
            lead = next((i + 1 for i in range(len(heard) - 1) if heard[i : i + 2] == ["i", "can"]), None)
            if lead is None or len({intent for _, _, intent in self._subjects_said(heard, stems, echoed, lead)}) < 3:
                return frozenset()
            negations = [lead]
        negations = [i for k, i in enumerate(negations) if not (k and tuple(heard[i - 3 : i]) in _OFFERS_MISHEARD)]
        said_after = self._subjects_said(heard, stems, echoed, negations[0])
        offered: set[int] = set()
        for start, n, _intent in said_after:
            before = [i for i in negations if i < start]
            after = heard[start + n : start + n + OFFER_AFTER_WORDS]
            if _says_any(heard[before[-1] + 1 : start], _OFFERS_BEFORE) or _says_any(after, _OFFERS_AFTER):
                offered.update(range(start, start + n))
        for negation in negations:
            listed = [(start, n, intent) for start, n, intent in said_after if start > negation]
            if len({intent for _, _, intent in listed}) >= 2:
                for start, n, _intent in listed:
                    offered.update(range(start, start + n))
                break
        return frozenset(offered)

    def _subjects_said(self, heard: list[str], stems: list[str], echoed: frozenset[int],
                       after: int) -> list[tuple[int, int, str]]:
        """(start, length, intent) of each subject keyword of ``heard`` after position ``after``,
        outside the request said back."""
        said = []
        for keyword, intent in self._subject_keywords().items():
            n = len(keyword)
            for start in range(after + 1, len(heard) - n + 1):
                if (stems[start] == _stem(keyword[0]) if n == 1 else tuple(heard[start : start + n]) == keyword) \
                        and start not in echoed:
                    said.append((start, n, intent))
        return said

    def _subject_keywords(self) -> dict[tuple[str, ...], str]:
        """The keywords that name a subject a refusal may offer, and their intents: every intent's
        but the fallback's and the echo's (cached on the instance)."""
        cached = self.__dict__.get("_offerable")
        if cached is None:
            cached = {k: intent for intent, spec in self.intents.items()
                      if not spec.fallback and not spec.says("{request}") for k in spec.keywords}
            object.__setattr__(self, "_offerable", cached)  # frozen dataclass: a private cache
        return cached

    def score(self, transcript: str, request_text: str = "") -> dict[str, float]:
        """Each intent's evidence in ``transcript``, 0 (none) to 1 (see the module docstring)."""
        return self._scores(transcript, request_text)[0]

    def _scores(self, transcript: str, request_text: str) -> tuple[dict[str, float], dict[str, float]]:
        """Each intent's score, and the same before :data:`SUBJECTLESS_DISCOUNT` (the same dict
        when no intent was discounted)."""
        heard_words = self.words_heard(transcript, request_text)
        heard, request, echoed, echo_share, aside, offered = heard_words
        if not heard:
            nothing = {intent: 0.0 for intent in self.intents}
            return nothing, nothing
        time_heard = clock_strength(heard, echoed | aside)
        stems = [_stem(w) for w in heard]
        heard_set = set(heard)
        weights = self._word_weights()
        echo_telling = self.echo_is_telling(request, echo_share)
        # The transcript with the echoed request blanked: its words are evidence of the echo only;
        # and with the keywords said aside blanked (a subject a refusal offers, "one more time"):
        # they are no evidence of their intent.
        not_echoed = [w if i not in echoed and i not in aside else "" for i, w in enumerate(heard)]
        subject_heard = self.subjects_heard(heard_words)
        unoffered = [w if i not in offered else "" for i, w in enumerate(heard)]
        unoffered_set = set(unoffered)
        scores = {}
        for intent, spec in self.intents.items():
            says_request = spec.says("{request}")
            # A phrase heard around an offered subject ("... give you the current time") is the offer's.
            phrase_words, phrase_set = (heard, heard_set) if says_request or not offered else (unoffered, unoffered_set)
            phrase = max((_phrase_evidence(p, phrase_words, phrase_set)
                          for p in self.phrases_for(intent, request_text, open_request=False)), default=0.0)
            # Words anywhere: each distinct distinctive word once; an echoed request's words
            # are evidence of the echo only.
            mine = weights[intent]
            seen = {stem for position, stem in enumerate(stems)
                    if says_request or (position not in echoed and position not in aside)}
            words = sum(mine.get(stem, 0.0) for stem in seen)
            own_words = heard if says_request else not_echoed
            words += sum(KEYWORD_FACTOR for k in spec.keywords if len(k) > 1 and _contains(own_words, k))
            evidence = [phrase, WORDS_WEIGHT * (1.0 - 0.5**words)]
            if spec.says("{time}"):
                evidence.append(TIME_SLOT_WEIGHT * time_heard)
            # The request said back without a lead-in counts when it is more than a word or two.
            if says_request and echo_telling:
                evidence.append(ECHO_SLOT_WEIGHT * echo_share)
            if spec.fallback and offered:
                evidence.append(OFFER_WEIGHT)
            missing = 1.0
            total = 1.0
            for value in evidence:
                missing *= 1.0 - max(0.0, min(1.0, value))
            total = 1.0 - missing
            if spec.says_in_every_phrase("{time}") and time_heard < 0.5:
                total *= MISSING_SLOT_FACTOR
            if request and spec.says_in_every_phrase("{request}") and echo_share < ECHO_HEARD_SHARE:
                total *= MISSING_SLOT_FACTOR
            if spec.fallback and subject_heard - {intent}:
                total *= 1.0 - FALLBACK_YIELD
            scores[intent] = round(total, 3)
        unnamed = [intent for intent, spec in self.intents.items()
                   if intent not in subject_heard and self._named_by_keywords(spec) and scores[intent] > 0]
        if not unnamed:
            return scores, scores
        discounted = dict(scores)
        for intent in unnamed:
            discounted[intent] = round(scores[intent] * (1.0 - SUBJECTLESS_DISCOUNT), 3)
        return discounted, scores

    def subjects_heard(self, heard_words: HeardWords) -> frozenset[str]:
        """The intents whose subject the transcript (:meth:`words_heard`) names: one of the intent's
        keywords (outside the request said back, unless the intent is the echo), the clock time
        for an intent whose phrases say ``{time}``, the request said back for one whose phrases
        say ``{request}``."""
        heard, request, echoed, echo_share, aside, _offered = heard_words
        if not heard:
            return frozenset()
        time_heard = clock_strength(heard, echoed | aside) >= 0.5
        echo_heard = echo_share >= ECHO_HEARD_SHARE and self.echo_is_telling(request, echo_share)
        not_echoed = [w if i not in echoed and i not in aside else "" for i, w in enumerate(heard)]
        stems = {_stem(w) for w in heard}
        not_echoed_stems = {_stem(w) for w in not_echoed if w}
        named = set()
        for intent, spec in self.intents.items():
            says_request = spec.says("{request}")
            if ((self._keyword_heard(spec, heard, stems) if says_request
                 else self._keyword_heard(spec, not_echoed, not_echoed_stems))
                    or (spec.says("{time}") and time_heard) or (says_request and echo_heard)):
                named.add(intent)
        return frozenset(named)

    def echo_is_telling(self, request: list[str], echo_share: float) -> bool:
        """Whether the request said back tells an echo: it has two words that are not common ones
        ("the sky is blue"), or it is a short request ("well done", "good luck") heard whole and
        in order, two words or more that are neither function words nor another intent's
        keyword. One word ("hello"), or a subject another intent's reply says anyway ("tell me
        the time" -> "the time is a quarter to six"), could be any reply's."""
        if sum(1 for w in request if w not in _COMMON_WORDS) >= 2:
            return True
        plain = [w for w in request if w not in _FUNCTION_WORDS]
        subjects = {_stem(k[0]) for spec in self.intents.values() if not spec.says("{request}")
                    for k in spec.keywords if len(k) == 1}
        return len(plain) >= 2 and echo_share >= 1.0 - 1e-9 and not any(_stem(w) in subjects for w in plain)

    @staticmethod
    def _named_by_keywords(spec: IntentExpectation) -> bool:
        """Whether the intent's subject is said by its keywords alone: it has keywords, and its
        phrases carry no slot that would name it (a clock time, the request said back)."""
        return bool(spec.keywords) and not spec.fallback and not spec.says("{time}") and not spec.says("{request}")

    @staticmethod
    def _keyword_heard(spec: IntentExpectation, heard: list[str], stems: set[str]) -> bool:
        """Whether one of the intent's keywords is in the transcript (a word by its stem)."""
        return any(_stem(k[0]) in stems if len(k) == 1 else _contains(heard, k) for k in spec.keywords)

    def classify(self, scores: Mapping[str, float]) -> str | None:
        """The intent the scores point to, or None when none is clear enough."""
        return self.verdict(scores).intent

    @staticmethod
    def verdict(scores: Mapping[str, float]) -> Verdict:
        """The verdict from each intent's score: the best when it is sure enough and clear of the runner-up."""
        ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
        if not ranked:
            return Verdict(None, 0.0, "", 0.0, {})
        best, best_score = ranked[0]
        runner_up, runner_up_score = ranked[1] if len(ranked) > 1 else ("", 0.0)
        sure = best_score >= MIN_SCORE and best_score - runner_up_score >= MIN_MARGIN - 1e-9
        return Verdict(best if sure else None, best_score, runner_up, runner_up_score, dict(scores))

    def judge(self, transcript: str, request_text: str = "") -> Verdict:
        """Score ``transcript`` and decide: :class:`Verdict`."""
        scores, undiscounted = self._scores(transcript, request_text)
        verdict = self.verdict(scores)
        if scores is not undiscounted:
            verdict = replace(verdict, heard_score=max(undiscounted.values()))
        # The discount of an intent whose subject is not heard may take a verdict away, or let
        # another named intent win; it never hands the reply to the fallback, which a garbled
        # reply of that intent ("i can't do it with the right oh look", espeak-ng's "i can't
        # check the weather right now") would resemble.
        if (verdict.intent is not None and scores is not undiscounted and self.intents[verdict.intent].fallback
                and self.verdict(undiscounted).intent != verdict.intent):
            return replace(verdict, intent=None)
        return verdict


def _phrase_evidence(phrase: list[str], heard: list[str], heard_set: set[str]) -> float:
    """A phrase's alignment share; a phrase none of whose own words (beyond function words and
    slots) was heard is weak evidence ("you like me" is not "you told me")."""
    share = _phrase_score(phrase, heard)
    content = [t for t in phrase if not t.startswith("{") and t not in _FUNCTION_WORDS]
    if content and not any(t in heard_set for t in content):
        share *= NO_CONTENT_FACTOR
    return share


def _echoed_span(heard: list[str], request: list[str]) -> tuple[frozenset[int], float]:
    """Where the request's words are said back in ``heard`` (positions), and the share heard.

    The request aligned locally (``_phrase_score``'s rules); its span counts only when at least
    :data:`ECHO_HEARD_SHARE` of it is heard.
    """
    if not request or not heard:
        return frozenset(), 0.0
    share, start, end = _aligned_span(request, heard)
    if share < ECHO_HEARD_SHARE:
        return frozenset(), share
    return frozenset(range(start, end)), share


def _aligned_span(phrase: list[str], heard: list[str]) -> tuple[float, int, int]:
    """Best local alignment of a literal ``phrase`` in ``heard``: (share of its weight, start, end),
    the span the shortest that scores the share."""
    share = _phrase_score(phrase, heard)
    if share <= 0:
        return 0.0, 0, 0
    best: tuple[int, int] | None = None
    for start in range(len(heard)):
        if heard[start] not in phrase:
            continue
        for end in range(start + 1, len(heard) + 1):
            if best is not None and end - start >= best[1] - best[0]:
                break
            if _phrase_score(phrase, heard[start:end]) >= share - 1e-9:
                best = (start, end)
                break
    return (share, *best) if best else (share, 0, len(heard))


def _says_any(words: list[str], phrases: tuple[tuple[str, ...], ...]) -> bool:
    """Whether ``words`` hold one of ``phrases``, not followed by "not" ("i can", not "i can not")."""
    for phrase in phrases:
        n = len(phrase)
        for i in range(len(words) - n + 1):
            if tuple(words[i : i + n]) == phrase and (i + n == len(words) or words[i + n] != "not"):
                return True
    return False


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
        unknown = set(spec) - {"phrases", "keywords", "related", "fallback"}
        if unknown:
            raise _fail(source, f"{key}.{min(unknown)}", "unknown key; an intent has phrases and/or keywords "
                        "(and related words; fallback: true for the reply to a request the gateway did not understand)")
        fallback = spec.get("fallback", False)
        if not isinstance(fallback, bool):
            raise _fail(source, f"{key}.fallback", f"must be true or false, not {fallback!r}")
        if not set(spec) - {"fallback", "related"}:
            raise _fail(source, key, 'has neither phrases nor keywords: give one or both, e.g. '
                        '{"phrases": ["hello how can i help you"], "keywords": ["hello"]}, or remove the intent')
        phrases = tuple(
            _parse_phrase(source, f"{key}.phrases[{i}]", text)
            for i, text in enumerate(_string_list(source, f"{key}.phrases", spec["phrases"]) if "phrases" in spec else [])
        )
        words = {}
        for field in ("keywords", "related"):
            words[field] = []
            for i, text in enumerate(_string_list(source, f"{key}.{field}", spec[field]) if field in spec else []):
                if "{" in text:
                    raise _fail(source, f"{key}.{field}[{i}]", f"{text!r}: slots belong in phrases, not {field}")
                words[field].append(tuple(normalize_words(text)))
        keywords = tuple(words["keywords"])
        parsed[name] = IntentExpectation(phrases, keywords + tuple(words["related"]), fallback, keywords)
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
