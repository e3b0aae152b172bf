"""A corpus manifest: reading and validating one into a :class:`~audio_corpus.model.Corpus`, and
writing one.

A manifest (``manifest.csv``) lists every utterance: ``id, text, expected_intent, reply_check,
path, voice, words_per_minute, snr_db, kind``, paths relative to the manifest's folder.
Everything that can be wrong with it is found at load time, every problem of every row at
once: missing columns, a bad intent name (:mod:`audio_corpus.intents`) or an unknown kind, a
duplicate id, a bad number or reply check (the reply-check language is
:mod:`voiceharness.reply_check`'s) -> :class:`~voiceharness.errors.CorpusError` naming the
manifest and its line. Then every file it names is loaded (:mod:`audio_corpus.audio_file`); a
noisy copy (kind ``noisy``) takes its speech bounds from its clean source in the same manifest
(same text, intent, voice and rate), since noise hides where speech ends.

::

    load_corpus(manifest=None, *, select=None) -> Corpus
    write_manifest(path, rows) -> None     # rows: mappings with the MANIFEST_COLUMNS keys
"""

from __future__ import annotations

import csv
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from voiceharness.errors import CorpusError
from voiceharness.guide import SAMPLE_RATE_HZ
from voiceharness.reply_check import parse_reply_check

from .audio_file import load_utterance_file
from .intents import check_intent_name, near_standard_intent
from .model import KINDS, Corpus, CorpusWarning, Utterance
from .specs import DEFAULT_MANIFEST

MANIFEST_COLUMNS = (
    "id",
    "text",
    "expected_intent",
    "reply_check",
    "path",
    "voice",
    "words_per_minute",
    "snr_db",
    "kind",
)
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def load_corpus(manifest: str | Path | None = None, *, select: str | None = None) -> Corpus:
    """Read and validate a manifest and load every WAV it names.

    ``manifest`` defaults to the bundled ``audio_corpus/manifest.csv``; WAV paths in it are
    relative to the manifest's directory. ``select`` is passed to :meth:`Corpus.select`.
    Raises CorpusError for any problem in the manifest or a file; emits CorpusWarning for a
    file that had to be converted. Only the selected files are read.
    """
    manifest_path = Path(manifest) if manifest is not None else DEFAULT_MANIFEST
    rows = _read_manifest(manifest_path)
    # Filter on manifest data first so a narrow selection does not read every file.
    stubs = Corpus((_stub(row) for row in rows), source=manifest_path).select(select)
    wanted = {u.id for u in stubs}
    loaded: dict[str, Utterance] = {}

    def load(row: dict[str, Any], speech_samples: tuple[int, int] | None = None) -> Utterance:
        if row["id"] not in loaded or speech_samples is not None:
            loaded[row["id"]] = load_utterance_file(
                manifest_path.parent / row["path"],
                utterance_id=row["id"],
                expected_intent=row["expected_intent"],
                text=row["text"],
                reply_check=row["reply_check"],
                kind=row["kind"],
                snr_db=row["snr_db"],
                voice=row["voice"],
                words_per_minute=row["words_per_minute"],
                speech_samples=speech_samples,
            )
        return loaded[row["id"]]

    sources = {_source_key(row): row for row in rows if row["kind"] != "noisy"}
    utterances = []
    for row in rows:
        if row["id"] not in wanted:
            continue
        source = sources.get(_source_key(row)) if row["kind"] == "noisy" else None
        if source is None:
            utterances.append(load(row))
            continue
        # Noise at 5 dB SNR hides the quiet ends of words from an energy detector, which would
        # move "end of speech" (and so every roundtrip) by up to 300 ms; a noisy copy has
        # its clean source's timing exactly, so it takes the source's speech bounds.
        clean = load(source)
        noisy = load(row)
        if noisy.num_samples == clean.num_samples and clean.speech_end_sample > 0:
            noisy = load(row, (clean.speech_start_sample, clean.speech_end_sample))
        utterances.append(noisy)
    return Corpus(utterances, source=manifest_path)


def _source_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """What a noisy copy shares with the clean utterance it was made from."""
    return (row["text"], row["expected_intent"], row["voice"], row["words_per_minute"])


def _stub(row: dict[str, Any]) -> Utterance:
    return Utterance(
        id=row["id"], text=row["text"], expected_intent=row["expected_intent"],
        reply_check=row["reply_check"], kind=row["kind"], snr_db=row["snr_db"],
        path=Path(row["path"]), sample_rate_hz=SAMPLE_RATE_HZ, pcm=b"",
        speech_start_sample=0, speech_end_sample=0, voice=row["voice"],
        words_per_minute=row["words_per_minute"],
    )  # fmt: skip


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    """Parse and validate every row; all problems are reported together in one CorpusError."""
    if not path.is_file():
        raise CorpusError(
            f"corpus manifest {path} not found; pass the path of a manifest.csv, or rebuild the "
            f"bundled corpus with `python -m audio_corpus.build`"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"corpus manifest {path} cannot be read as UTF-8 text: {error}") from None
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    missing = [column for column in MANIFEST_COLUMNS if column not in header]
    if missing:
        raise CorpusError(
            f"corpus manifest {path}, line 1: missing column(s) {', '.join(missing)}; "
            f"the header must name {','.join(MANIFEST_COLUMNS)}"
        )
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    # The bundled corpus speaks the SmartJARVIS NLU's language; one's own may have other intents.
    standard_only = path.resolve() == DEFAULT_MANIFEST.resolve()
    for raw in reader:
        line = reader.line_num
        where = f"line {line}"
        if None in raw:
            problems.append(f"{where}: more cells than columns in the header")
            continue
        row: dict[str, Any] = {key: (value or "").strip() for key, value in raw.items() if key}
        if not any(row.values()):
            continue  # blank line
        row_problems: list[str] = []
        uid = row["id"]
        if not uid:
            row_problems.append("empty id")
        elif not ID_PATTERN.match(uid):
            row_problems.append(f"id {uid!r} may only hold letters, digits and _ . + -")
        elif uid in first_line:
            row_problems.append(f"duplicate id {uid!r} (first on line {first_line[uid]})")
        else:
            first_line[uid] = line
        intent_problem = check_intent_name(row["expected_intent"], standard_only=standard_only)
        if intent_problem:
            row_problems.append(intent_problem)
        elif not standard_only:
            _warn_near_standard_intent(path, line, row["expected_intent"])
        if row["kind"] not in KINDS:
            row_problems.append(f"unknown kind {row['kind']!r}; use one of {', '.join(KINDS)}")
        elif row["kind"] == "unknown" and row["expected_intent"] != "UNKNOWN":
            row_problems.append("kind unknown (out of grammar) needs expected_intent UNKNOWN")
        if not row["path"]:
            row_problems.append("empty path")
        try:
            row["snr_db"] = float(row["snr_db"]) if row["snr_db"] else None
            if row["snr_db"] is not None and not math.isfinite(row["snr_db"]):
                raise ValueError
        except ValueError:
            row_problems.append(f"snr_db {row['snr_db']!r} is not a number of dB")
        if row["kind"] == "noisy" and row["snr_db"] is None:
            row_problems.append("kind noisy needs snr_db")
        try:
            row["words_per_minute"] = int(row["words_per_minute"]) if row["words_per_minute"] else None
            if row["words_per_minute"] is not None and not 20 <= row["words_per_minute"] <= 600:
                row_problems.append(f"words_per_minute {row['words_per_minute']} is outside 20-600")
        except ValueError:
            row_problems.append(f"words_per_minute {row['words_per_minute']!r} is not an integer")
        try:
            parse_reply_check(row["reply_check"])
        except ValueError as error:
            row_problems.append(str(error))
        problems.extend(f"{where}: {problem}" for problem in row_problems)
        rows.append(row)
    if not problems and not rows:
        problems.append("no utterances (the manifest has a header but no rows)")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise CorpusError(f"corpus manifest {path} is invalid:\n  " + "\n  ".join(shown))
    return rows


def _warn_near_standard_intent(path: Path, line: int, intent: str) -> None:
    """A custom intent one typo away from a standard one is more likely a typo than a new intent."""
    note = near_standard_intent(intent)
    if note:
        warnings.warn(f"corpus manifest {path}, line {line}: {note}", CorpusWarning, stacklevel=4)


def write_manifest(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write a manifest that :func:`load_corpus` reads: ``MANIFEST_COLUMNS``, ``\\n`` line ends.

    ``None`` cells are written empty. The bytes depend only on ``rows`` (reproducible builds).
    """
    with Path(path).open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for row in rows:
            writer.writerow(["" if row[column] is None else row[column] for column in MANIFEST_COLUMNS])
