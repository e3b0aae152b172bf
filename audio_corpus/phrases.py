"""A corpus of one's own phrases: a CSV of text and expected intent, spoken by espeak-ng.

::

    python -m audio_corpus.build --from-text phrases.csv --voices en-us,en+m3 --rates 130,160 --out DIR

``phrases.csv`` holds ``text,expected_intent[,reply_check]`` per line (a header line naming
the columns is optional; ``#`` starts a comment line)::

    text,expected_intent,reply_check
    hello jarvis,GREETING,
    echo open the pod bay doors,ECHO,contains:open the pod bay doors
    play some jazz,PLAY_MUSIC,any:jazz|playing

Every phrase is spoken in every voice at every rate, exactly as the bundled corpus is made
(:mod:`audio_corpus.synthesis`), into ``DIR/wav/ID.wav``; ``DIR/manifest.csv`` lists them in
the bundled manifest's format, so ``load_corpus(DIR/manifest.csv)`` and the harness's
``--corpus-manifest DIR/manifest.csv`` use it as it is. Ids are
``INTENT_TEXT_VOICE_RATE`` as in the bundled corpus. A phrase whose intent is ``UNKNOWN`` is of
kind ``unknown`` (out of grammar), every other one ``clean``. Building twice with the same
espeak-ng gives byte-identical files (``DIR/build-info.json`` records its version).

Public API::

    read_phrases(path) -> list[Phrase]
    parse_voices(spec) -> list[str]           # "en-us,en+m3"; each checked with espeak-ng
    parse_rates(spec) -> list[int]            # "130,160"
    build_from_text(phrases_csv, out_dir, voices, rates, *, quiet=False) -> list[Spec]
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from voiceharness.errors import CorpusError
from voiceharness.reply_check import parse_reply_check

from .intents import check_intent_name, near_standard_intent
from .manifest import load_corpus, write_manifest
from .model import CorpusWarning
from .specs import BUILD_INFO, PACKAGE_DIR, Spec, manifest_rows, text_slug
from .synthesis import check_rate, check_voice, espeak_version, synthesise, to_wav_bytes
from .tables import prepare_output, raise_problems, read_table

T = TypeVar("T")
PHRASE_COLUMNS = ("text", "expected_intent", "reply_check")
BUILT_BY = "python -m audio_corpus.build --from-text"
_WHAT = "phrases file"


@dataclass(frozen=True)
class Phrase:
    """One line of a phrases file."""

    line: int
    text: str
    expected_intent: str
    reply_check: str


def read_phrases(path: str | Path) -> list[Phrase]:
    """The phrases of ``path``; CorpusError naming the file and every bad line."""
    phrases: list[Phrase] = []
    first_line: dict[str, int] = {}
    rows, problems = read_table(path, PHRASE_COLUMNS, required=2, what=_WHAT)
    for row in rows:
        text = " ".join(row.cells["text"].split())
        intent, check = row.cells["expected_intent"], row.cells["reply_check"]
        line_problems = []
        intent_problem = check_intent_name(intent)
        if intent_problem:
            line_problems.append(intent_problem)
        elif near_standard_intent(intent):
            warnings.warn(f"{path}, line {row.line}: {near_standard_intent(intent)}", CorpusWarning, stacklevel=2)
        try:
            parse_reply_check(check)
        except ValueError as error:
            line_problems.append(str(error))
        # Ids keep only letters and digits of the text: two phrases that differ in case or
        # punctuation alone would overwrite each other's files.
        slug = text_slug(text)
        if slug in first_line:
            line_problems.append(
                f"the phrase {text!r} is the same as line {first_line[slug]}'s once case and "
                f"punctuation are ignored (ids are made of its words); keep one"
            )
        else:
            first_line[slug] = row.line
        problems += [f"line {row.line}: {problem}" for problem in line_problems]
        phrases.append(Phrase(row.line, text, intent, check))
    raise_problems(path, _WHAT, problems)
    return phrases


def parse_voices(spec: str) -> list[str]:
    """espeak-ng voices from a comma-separated list, checked; CorpusError for an unknown one."""
    voices = _unique(voice.strip() for voice in spec.split(","))
    if not voices:
        raise CorpusError(f"--voices {spec!r} names no voice; e.g. --voices en-us,en+m3")
    for voice in voices:
        check_voice(voice)
    return voices


def parse_rates(spec: str) -> list[int]:
    """Speaking rates in words per minute from a comma-separated list; CorpusError for a bad one."""
    cells = _unique(cell.strip() for cell in spec.split(","))
    if not cells:
        raise CorpusError(f"--rates {spec!r} names no rate; e.g. --rates 130,160")
    return _unique(check_rate(cell) for cell in cells)


def build_from_text(
    phrases_csv: str | Path, out_dir: str | Path, voices: Sequence[str], rates: Sequence[int],
    *, quiet: bool = False,
) -> list[Spec]:  # fmt: skip
    """Speak every phrase in every voice at every rate into ``out_dir``; the utterances built.

    Everything is checked (the phrases, the voices, the rates, the output folder) before a file
    is written. The manifest is loaded back with :func:`load_corpus` before this returns.
    """
    out_dir = Path(out_dir)
    if out_dir.resolve() == PACKAGE_DIR:
        raise CorpusError("--from-text would overwrite the bundled corpus; pass --out DIR for your own")
    phrases = read_phrases(phrases_csv)
    for voice in voices:
        check_voice(voice)
    rates = [check_rate(rate) for rate in rates]
    specs = [
        Spec(p.text, p.expected_intent, voice, rate, "unknown" if p.expected_intent == "UNKNOWN" else "clean",
             p.reply_check)
        for p in phrases for voice in voices for rate in rates
    ]  # fmt: skip
    manifest = prepare_output(out_dir, stale_wavs="wav" if _built_here(out_dir) else None)
    (out_dir / "wav").mkdir(exist_ok=True)
    for spec in specs:
        (out_dir / spec.path).write_bytes(to_wav_bytes(synthesise(spec.text, spec.voice, spec.words_per_minute)))
        if not quiet:
            print(f"  {spec.path}")
    write_manifest(manifest, manifest_rows(specs))
    info = {
        "built_by": BUILT_BY, "phrases": Path(phrases_csv).name, "voices": list(voices), "rates_wpm": rates,
        "espeak_ng": espeak_version(), "numpy": np.__version__, "utterances": len(specs),
    }  # fmt: skip
    (out_dir / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    with warnings.catch_warnings():  # the phrases' warnings were given with their lines above
        warnings.simplefilter("ignore", CorpusWarning)
        load_corpus(manifest)  # what --corpus-manifest will do: fail here, not in a load test
    return specs


def _built_here(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds an earlier --from-text build (whose stale WAVs may be removed)."""
    try:
        return json.loads((out_dir / BUILD_INFO).read_text(encoding="utf-8")).get("built_by") == BUILT_BY
    except (OSError, ValueError, AttributeError):
        return False


def _unique(items: Iterable[T]) -> list[T]:
    """``items`` without repeats or empty strings, in their order."""
    seen: list[T] = []
    for item in items:
        if item != "" and item not in seen:
            seen.append(item)
    return seen
