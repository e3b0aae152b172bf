"""The selection language: which utterances of a corpus a run says (``load_corpus(select=...)``,
``Corpus.select``, the harness's corpus selection option).

A selection is a comma-separated list of filters. A filter is an utterance id, a glob over ids
(``greeting_*``), an intent name (a standard one or one of the corpus, ``GREETING``, any case),
or ``kind:clean|noisy|unknown``, ``voice:en-us``, ``intent:ECHO``, ``id:ID``. Filters of the same
sort are alternatives (``GREETING,ECHO`` is either); filters of different sorts must all hold
(``GREETING,kind:clean`` is clean greetings). A filter that matches no utterance, or a selection
that ends up empty, is a :class:`~voiceharness.errors.CorpusError` listing what is available.

Nothing here knows files or manifests: :func:`select` takes anything with the attributes it
filters on (:class:`Selectable`), in the corpus's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Protocol, TypeVar

from voiceharness.errors import CorpusError
from voiceharness.guide import INTENTS

PREFIXES = ("kind", "voice", "intent", "id")  # the filters written SORT:VALUE


class Selectable(Protocol):
    """What a filter reads of an utterance."""

    @property
    def id(self) -> str: ...
    @property
    def expected_intent(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def voice(self) -> str: ...


S = TypeVar("S", bound=Selectable)


def select(
    utterances: Sequence[S], spec: str, *, intents: Sequence[str], kinds: Sequence[str], where: str
) -> list[S]:
    """The ``utterances`` matching ``spec``, in their order.

    ``intents`` are the expected intents of the corpus (a bare name among them is an intent
    filter), ``kinds`` the kinds in the order an error lists them, ``where`` what an error calls
    the corpus (its manifest).
    """
    groups: dict[str, list[str]] = {}
    for raw in spec.split(","):
        token = raw.strip()
        if not token:
            continue
        sort, value = parse_filter(token, intents)
        if not any(matches(u, sort, value) for u in utterances):
            raise CorpusError(
                f"corpus filter {token!r} matches no utterance of {where}. " + available(utterances, intents, kinds)
            )
        groups.setdefault(sort, []).append(value)
    chosen = [
        u
        for u in utterances
        if all(any(matches(u, sort, value) for value in values) for sort, values in groups.items())
    ]
    if not chosen:
        raise CorpusError(
            f"corpus filter {spec!r} matches no utterance (each filter matches some, but not "
            f"together: filters of different sorts must all hold). " + available(utterances, intents, kinds)
        )
    return chosen


def parse_filter(token: str, intents: Sequence[str] = ()) -> tuple[str, str]:
    """``(sort, value)`` of one filter: sort is ``id``, ``glob``, ``intent``, ``kind`` or ``voice``."""
    prefix, sep, rest = token.partition(":")
    if sep:
        sort = prefix.strip().lower()
        if sort not in PREFIXES:
            raise CorpusError(
                f"corpus filter {token!r}: unknown filter {prefix!r}; use an id, an intent, "
                f"or kind:, voice:, intent:, id:"
            )
        value = rest.strip()
        return sort, value.upper() if sort == "intent" else value
    if token.upper() in INTENTS or token.upper() in intents:
        return "intent", token.upper()
    if any(char in token for char in "*?["):
        return "glob", token
    return "id", token


def matches(utterance: Selectable, sort: str, value: str) -> bool:
    """Whether ``utterance`` passes the filter ``(sort, value)``."""
    if sort == "id":
        return utterance.id == value
    if sort == "glob":
        return fnmatchcase(utterance.id, value)
    if sort == "intent":
        return utterance.expected_intent == value
    if sort == "kind":
        return utterance.kind == value
    if sort == "voice":
        return utterance.voice == value
    raise AssertionError(sort)


def available(utterances: Sequence[Selectable], intents: Sequence[str], kinds: Sequence[str]) -> str:
    """What a selection could have named: the intents, the kinds present and every id."""
    present = {u.kind for u in utterances}
    ids = ", ".join(u.id for u in utterances)
    return (
        f"Available intents: {', '.join(intents)}; kinds: "
        f"{', '.join(k for k in kinds if k in present)}; ids: {ids}"
    )
