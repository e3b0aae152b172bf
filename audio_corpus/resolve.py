"""An utterance from whatever a scenario names: an Utterance, an id, a WAV file, or plain text.

::

    resolve_utterance(what, *, corpus=None, voice="en-us", rate_wpm=160, expected_intent="",
                      reply_check="") -> Utterance
    text_utterance(text, *, voice="en-us", rate_wpm=160, expected_intent="", reply_check="")
        -> Utterance
    text_utterance_id(text, voice, rate_wpm) -> str

The rules :func:`resolve_utterance` applies to ``what``, in this order:

1. an :class:`Utterance` is itself;
2. a :class:`pathlib.Path` (any ``os.PathLike``) is an audio file; it must exist;
3. a string that is an utterance id of ``corpus`` (the bundled corpus when None) is that
   utterance;
4. a string that looks like a path — it holds ``/``, starts with ``~``, or ends in an audio
   extension (``.wav``, ``.flac``, ``.ogg``, ``.mp3``...) — is an audio file, loaded with
   :func:`load_utterance_file` (converted to 16 kHz mono PCM16 with a CorpusWarning when it is
   not); when no such file exists it is a CorpusError naming it, never speech of the path;
5. a string with ``_`` and no space (``greeting_helo_jarvis``) is taken for a mistyped id: a
   CorpusError naming the closest ids;
6. anything else is plain text, spoken by espeak-ng in ``voice`` at ``rate_wpm`` words per
   minute (:mod:`audio_corpus.synthesis`, the bundled corpus's own recipe) on first use, and
   kept in the speech cache on disk (:mod:`audio_corpus.speech_cache`) for every process after.
   Its id is :func:`text_utterance_id`. To say a text that rules 3-5 would take for something
   else (``"1/2"``), call :func:`text_utterance` instead, which always synthesises.

A file that exists but has neither ``/`` nor an audio extension is *not* loaded: ``"hello"``
is text even next to a file named ``hello``; write ``"./hello"`` for the file.

``voice`` and ``rate_wpm`` apply to text only. ``expected_intent`` and ``reply_check``, when
given, set the expectation of text and files, and replace that of a corpus utterance or an
Utterance (a new Utterance sharing the same audio bytes); ``""`` keeps what it has (text and
files then expect nothing: the caller judges the reply).

Every result is memoised in the process: a thousand users saying the same text, id or file
get the one Utterance, its one ``pcm`` buffer and its one tuple of frames per chunk size. The
memo holds every distinct text said, so say a bounded set of texts (not a fresh number each
turn) in a long run.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import re
import threading
from pathlib import Path

from voiceharness.errors import CorpusError
from voiceharness.reply_check import parse_reply_check

from .audio_file import load_utterance_file
from .intents import check_intent_name
from .manifest import load_corpus
from .model import Corpus, Utterance
from .speech_cache import cached_speech
from .synthesis import check_rate, check_voice

DEFAULT_VOICE = "en-us"
DEFAULT_RATE_WPM = 160
# What libsndfile reads (and mp3, which it reads from 1.1): a string ending so names a file.
AUDIO_SUFFIXES = (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".au", ".mp3")
_ID_CHARS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

# Keys: ("text", text, voice, rate) | ("file", path, mtime_ns, size) | ("expect", Utterance, intent, check).
_memo: dict[tuple, Utterance] = {}
# One lock per key, so two users saying a new text at once synthesise it once, while other
# texts go ahead. Made at call time (not import time), so that under gevent it is gevent's.
_locks: dict[tuple, threading.Lock] = {}
_bundled: dict[str, Corpus] = {}


def resolve_utterance(
    what: Utterance | str | os.PathLike,
    *,
    corpus: Corpus | None = None,
    voice: str = DEFAULT_VOICE,
    rate_wpm: int = DEFAULT_RATE_WPM,
    expected_intent: str = "",
    reply_check: str = "",
    synthesise_in_child: bool = False,
) -> Utterance:
    """The utterance ``what`` names, by the rules of this module's docstring.

    ``synthesise_in_child``: text not yet in the speech cache is synthesised by a child process
    (a load generator's choice: see :func:`audio_corpus.speech_cache.cached_speech`).

    CorpusError (one line, naming ``what``) for an unknown file, a mistyped id, a bad voice,
    rate, intent or reply check, or a missing espeak-ng.
    """
    _check_expectations(expected_intent, reply_check)
    if isinstance(what, Utterance):
        return _expecting(what, expected_intent, reply_check)
    if isinstance(what, os.PathLike):
        return _file_utterance(Path(what), expected_intent, reply_check)
    if not isinstance(what, str):
        raise CorpusError(
            f"cannot say {what!r} ({type(what).__name__}): give text, an utterance id, a WAV path or an Utterance"
        )
    source = corpus
    if _ID_CHARS.match(what):
        source = corpus if corpus is not None else bundled_corpus()
        if what in source.by_id:
            return _expecting(source.by_id[what], expected_intent, reply_check)
    if _looks_like_path(what):
        return _file_utterance(Path(what).expanduser(), expected_intent, reply_check, named=what)
    if "_" in what and not any(char.isspace() for char in what):
        source = corpus if corpus is not None else bundled_corpus()
        ids = list(source.by_id)
        close = difflib.get_close_matches(what, ids, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise CorpusError(
            f"{what!r} is not an utterance id of {_describe(source)}; {hint}to say it as text, "
            f"use words without _ or audio_corpus.text_utterance({what!r})"
        )
    return text_utterance(what, voice=voice, rate_wpm=rate_wpm, expected_intent=expected_intent,
                          reply_check=reply_check, synthesise_in_child=synthesise_in_child)  # fmt: skip


def text_utterance(
    text: str,
    *,
    voice: str = DEFAULT_VOICE,
    rate_wpm: int = DEFAULT_RATE_WPM,
    expected_intent: str = "",
    reply_check: str = "",
    synthesise_in_child: bool = False,
) -> Utterance:
    """``text`` spoken by espeak-ng (from the speech cache when said before), whatever it looks like.

    Runs of white space count as one space. CorpusError for empty text, a voice espeak-ng does
    not have, a rate outside 80-450 wpm, or a missing espeak-ng.
    """
    _check_expectations(expected_intent, reply_check)
    said = " ".join(str(text).split())
    if not said:
        raise CorpusError("nothing to say: the text is empty; give the words to speak")
    rate = check_rate(rate_wpm)
    key = ("text", said, voice, rate)
    utterance = _memo.get(key)
    if utterance is None:
        with _locks.setdefault(key, threading.Lock()):
            utterance = _memo.get(key)
            if utterance is None:
                check_voice(voice)
                utterance = cached_speech(said, voice, rate, utterance_id=text_utterance_id(said, voice, rate),
                                          in_child=synthesise_in_child)
                _memo[key] = utterance
    return _expecting(utterance, expected_intent, reply_check)


def text_utterance_id(text: str, voice: str, rate_wpm: int) -> str:
    """A readable id for text said in ``voice`` at ``rate_wpm``: ``hello_jarvis_en-us_160_1a2b3c4d``.

    The first words of the text (lower case, letters and digits) for people, then 8 hex digits
    of a hash of the exact text, voice and rate, so that texts differing only in case or
    punctuation ("Hello, Jarvis!") keep apart ids. The same on every machine and run.
    """
    words = re.sub(r"[^a-z0-9]+", "_", text.lower().replace("'", "")).strip("_")[:40].strip("_") or "text"
    digest = hashlib.sha256(f"{text}\0{voice}\0{rate_wpm}".encode()).hexdigest()[:8]
    return f"{words}_{voice.replace('+', '-')}_{rate_wpm}_{digest}"


def _check_expectations(expected_intent: str, reply_check: str) -> None:
    problem = check_intent_name(expected_intent) if expected_intent else None
    if problem:
        raise CorpusError(problem)
    try:
        parse_reply_check(reply_check)
    except ValueError as error:
        raise CorpusError(str(error)) from None


def _expecting(utterance: Utterance, expected_intent: str, reply_check: str) -> Utterance:
    """``utterance`` with the expectation given ("" keeps its own), memoised: one per expectation."""
    intent = expected_intent or utterance.expected_intent
    check = reply_check or utterance.reply_check
    if (intent, check) == (utterance.expected_intent, utterance.reply_check):
        return utterance
    key = ("expect", utterance, intent, check)
    found = _memo.get(key)
    if found is None:
        # The new Utterance holds the same pcm bytes object (no copy); its frames cache is its own.
        kind = utterance.kind if utterance.kind != "unknown" or intent == "UNKNOWN" else "clean"
        found = _memo.setdefault(
            key, dataclasses.replace(utterance, expected_intent=intent, reply_check=check, kind=kind)
        )
    return found


def _file_utterance(path: Path, expected_intent: str, reply_check: str, *, named: str | None = None) -> Utterance:
    named = named if named is not None else str(path)
    try:
        status = path.stat()
    except OSError:
        raise CorpusError(
            f"no audio file {named!r} ({path.absolute()} does not exist); fix the path, or to say "
            f"it as text use audio_corpus.text_utterance({named!r})"
        ) from None
    if path.is_dir():
        raise CorpusError(f"{named!r} is a folder, not an audio file; name a WAV file in it")
    key = ("file", str(path.resolve()), status.st_mtime_ns, status.st_size)
    utterance = _memo.get(key)
    if utterance is None:
        with _locks.setdefault(key, threading.Lock()):
            utterance = _memo.get(key)
            if utterance is None:
                # No expectation here: one load per file, whatever each caller expects of it.
                utterance = load_utterance_file(path, expected_intent="", utterance_id=_file_id(path))
                _memo[key] = utterance
    return _expecting(utterance, expected_intent, reply_check)


def _file_id(path: Path) -> str:
    uid = re.sub(r"^[^A-Za-z0-9]+", "", re.sub(r"[^A-Za-z0-9_.+-]+", "_", path.stem))
    return uid or "recording"


def _looks_like_path(what: str) -> bool:
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return (
        any(separator in what for separator in separators)
        or what.startswith("~")
        or what.lower().rstrip().endswith(AUDIO_SUFFIXES)
    )


def bundled_corpus() -> Corpus:
    """The bundled corpus, loaded once per process on first need (a load generator loads it before
    Locust forks its ``--processes``, so they share its pages)."""
    corpus = _bundled.get("corpus")
    if corpus is None:
        # setdefault: when two threads load it at once, both keep the first one stored.
        corpus = _bundled.setdefault("corpus", load_corpus())
    return corpus


def _describe(corpus: Corpus) -> str:
    return f"{corpus.source}" if corpus.source is not None else f"the given corpus ({len(corpus)} utterances)"
