"""A corpus of one's own recordings: a folder of audio files and a CSV of what each one says.

::

    python -m audio_corpus.build --from-dir DIR --labels labels.csv [--out OUTDIR]

``labels.csv`` holds ``file,expected_intent[,text][,reply_check]`` per line, ``file`` relative
to ``DIR`` (a header line naming the columns is optional, and with one they may come in any
order; ``#`` starts a comment line)::

    file,expected_intent,text,reply_check
    alice/lights_off.wav,LIGHTS_OFF,turn off the lights,
    bob/hello.flac,GREETING,hello jarvis,any:hello|hi

Every file is checked as the loader checks a corpus file (missing, empty, truncated, not
audio...), must hold speech (:func:`voiceharness.vad.find_speech` finds where it starts and
ends), and is converted to 16 kHz mono PCM16 when it is not already, with a
:class:`~audio_corpus.CorpusWarning` naming the file and line; the converted copy is written
to ``OUTDIR/converted/`` (same relative path, ``.wav``). Speech that runs to the end of a file
gets a warning too: a gateway that ends an utterance on trailing silence would wait for more.
``OUTDIR/manifest.csv`` (``OUTDIR`` is ``DIR`` by default) then lists every utterance in the
bundled manifest's format, pointing at the original file where no conversion was needed, so
the harness's ``--corpus-manifest OUTDIR/manifest.csv`` uses it as it is. Ids are the file's
path under ``DIR`` without its extension (``alice_lights_off``); intents may be any upper-case
name (another gateway's commands).

Public API::

    read_labels(path) -> list[Label]
    build_from_dir(recordings_dir, labels_csv, out_dir=None, *, quiet=False) -> Corpus
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from voiceharness.errors import CorpusError
from voiceharness.guide import SAMPLE_RATE_HZ
from voiceharness.reply_check import parse_reply_check

from .audio_file import load_utterance_file, pcm16_wav_bytes
from .intents import check_intent_name, near_standard_intent
from .manifest import load_corpus, write_manifest
from .model import Corpus, CorpusWarning, Utterance
from .specs import BUILD_INFO, PACKAGE_DIR
from .tables import prepare_output, raise_problems, read_table

LABEL_COLUMNS = ("file", "expected_intent", "text", "reply_check")
CONVERTED_DIR = "converted"
BUILT_BY = "python -m audio_corpus.build --from-dir"
# Less trailing silence than this and a gateway's silence endpointer may not end the utterance
# (the bundled corpus has 200 ms; endpointers typically wait 100-300 ms).
MIN_TRAILING_SILENCE_MS = 100
# The loader reads anything libsndfile reads; these are what an unlabelled file would be.
_AUDIO_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".au", ".mp3"}
_WHAT = "labels file"


@dataclass(frozen=True)
class Label:
    """One line of a labels file; ``path`` is the file it names, under the recordings folder."""

    line: int
    file: str
    path: Path
    utterance_id: str
    expected_intent: str
    text: str
    reply_check: str


def read_labels(path: str | Path, recordings_dir: str | Path) -> list[Label]:
    """The labels of ``path`` for files in ``recordings_dir``; CorpusError naming every bad line."""
    labels, problems = _read_labels(path, Path(recordings_dir))
    raise_problems(path, _WHAT, problems)
    return labels


def _read_labels(path: str | Path, recordings_dir: Path) -> tuple[list[Label], list[str]]:
    """The well-formed labels, and the problems of the others (``line N: ...``)."""
    if not recordings_dir.is_dir():
        raise CorpusError(f"recordings folder {recordings_dir} not found (--from-dir names a folder)")
    labels: list[Label] = []
    file_line: dict[Path, int] = {}
    id_line: dict[str, int] = {}
    rows, problems = read_table(path, LABEL_COLUMNS, required=2, what=_WHAT)
    for row in rows:
        cells = row.cells
        line_problems = []
        intent_problem = check_intent_name(cells["expected_intent"])
        if intent_problem:
            line_problems.append(intent_problem)
        elif near_standard_intent(cells["expected_intent"]):
            warnings.warn(f"{path}, line {row.line}: {near_standard_intent(cells['expected_intent'])}",
                          CorpusWarning, stacklevel=3)  # fmt: skip
        try:
            parse_reply_check(cells["reply_check"])
        except ValueError as error:
            line_problems.append(str(error))
        audio = recordings_dir / cells["file"]
        uid = _utterance_id(cells["file"])
        if not audio.is_file():
            line_problems.append(
                f"file {cells['file']!r} not found in {recordings_dir}"
                + (" (it is a folder)" if audio.is_dir() else "")
            )
        elif audio.resolve() in file_line:
            line_problems.append(f"file {cells['file']!r} is labelled on line {file_line[audio.resolve()]} too")
        elif uid in id_line:
            line_problems.append(
                f"file {cells['file']!r} gets the id {uid!r} of line {id_line[uid]}'s file "
                f"(ids are paths without extension); rename one"
            )
        else:
            file_line[audio.resolve()] = row.line
            id_line[uid] = row.line
        problems += [f"line {row.line}: {problem}" for problem in line_problems]
        if not line_problems:
            labels.append(Label(row.line, cells["file"], audio, uid, cells["expected_intent"],
                                " ".join(cells["text"].split()), cells["reply_check"]))  # fmt: skip
    return labels, problems


def build_from_dir(
    recordings_dir: str | Path, labels_csv: str | Path, out_dir: str | Path | None = None,
    *, quiet: bool = False,
) -> Corpus:  # fmt: skip
    """Check, convert and list the labelled recordings; the corpus, loaded from the new manifest.

    Every file is read before anything is written, and every problem of every file is reported
    together (CorpusError naming the labels file, the line and the file).
    """
    recordings_dir = Path(recordings_dir)
    out_dir = Path(out_dir) if out_dir is not None else recordings_dir
    if out_dir.resolve() == PACKAGE_DIR:
        raise CorpusError("--from-dir would overwrite the bundled corpus; pass --out DIR for your own")
    # Every file of a well-formed line is read even when other lines are bad: one run lists all.
    labels, problems = _read_labels(labels_csv, recordings_dir)
    checked: list[tuple[Label, Utterance, tuple[str, ...]]] = []
    for label in labels:
        where = f"line {label.line}: {label.path}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CorpusWarning)
            try:
                utterance = load_utterance_file(
                    label.path, expected_intent=label.expected_intent, utterance_id=label.utterance_id,
                    text=label.text, reply_check=label.reply_check, kind=_kind(label.expected_intent),
                )  # fmt: skip
            except CorpusError as error:
                problems.append(f"line {label.line}: {error}")
                continue
        reasons = tuple(r for w in caught if isinstance(w.message, CorpusWarning) for r in w.message.reasons)
        if utterance.speech_end_sample == 0:
            problems.append(
                f"{where}: no speech found (silence, or too quiet to tell from its noise); "
                f"re-record it or leave it out"
            )
            continue
        trailing_ms = (utterance.num_samples - utterance.speech_end_sample) * 1000 / SAMPLE_RATE_HZ
        if trailing_ms < MIN_TRAILING_SILENCE_MS:
            warnings.warn(
                f"{labels_csv}, {where}: speech ends {trailing_ms:.0f} ms before the end of the file; a "
                f"gateway that ends an utterance on silence may wait for more (add "
                f"{MIN_TRAILING_SILENCE_MS} ms or more: `sox IN OUT pad 0 0.3`, or send an end marker)",
                CorpusWarning,
                stacklevel=2,
            )
        checked.append((label, utterance, reasons))
    raise_problems(labels_csv, _WHAT, problems)

    manifest = prepare_output(out_dir)
    rows = []
    for label, utterance, reasons in checked:
        audio = label.path
        if reasons:
            audio = out_dir / CONVERTED_DIR / _relative(label.path, recordings_dir).with_suffix(".wav")
            audio.parent.mkdir(parents=True, exist_ok=True)
            audio.write_bytes(pcm16_wav_bytes(utterance.pcm))
            warnings.warn(
                f"{labels_csv}, line {label.line}: {label.path}: {'; '.join(reasons)}; converted copy "
                f"written to {audio}",
                CorpusWarning,
                stacklevel=2,
            )
        rows.append({
            "id": utterance.id, "text": utterance.text, "expected_intent": utterance.expected_intent,
            "reply_check": utterance.reply_check, "path": _manifest_path(audio, out_dir), "voice": "",
            "words_per_minute": None, "snr_db": None, "kind": utterance.kind,
        })  # fmt: skip
    write_manifest(manifest, rows)
    info = {"built_by": BUILT_BY, "recordings": str(recordings_dir), "labels": Path(labels_csv).name,
            "utterances": len(rows), "converted": sum(1 for _, _, reasons in checked if reasons)}  # fmt: skip
    (out_dir / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    with warnings.catch_warnings():  # the labels' warnings were given with their lines above
        warnings.simplefilter("ignore", CorpusWarning)
        corpus = load_corpus(manifest)  # what --corpus-manifest will do: fail here, not in a load test
    if not quiet:
        unlabelled = _unlabelled(recordings_dir, out_dir, labels)
        if unlabelled:
            shown = ", ".join(unlabelled[:5]) + (f" and {len(unlabelled) - 5} more" if len(unlabelled) > 5 else "")
            print(f"note: {len(unlabelled)} audio file(s) in {recordings_dir} have no label: {shown}")
    return corpus


def _utterance_id(file: str) -> str:
    """``alice/lights off.wav`` -> ``alice_lights_off``: a manifest id made of the path."""
    stem = str(Path(file).with_suffix("")).replace(os.sep, "_").replace("/", "_")
    uid = re.sub(r"[^A-Za-z0-9_.+-]+", "_", stem.lstrip("./_"))
    uid = re.sub(r"^[^A-Za-z0-9]+", "", uid)
    return uid or "recording"


def _kind(expected_intent: str) -> str:
    return "unknown" if expected_intent == "UNKNOWN" else "clean"


def _relative(path: Path, folder: Path) -> Path:
    """``path`` under ``folder`` when it is there, else just its name."""
    try:
        return path.resolve().relative_to(folder.resolve())
    except ValueError:
        return Path(path.name)


def _manifest_path(audio: Path, out_dir: Path) -> str:
    """A manifest path is relative to the manifest's folder (so the two can move together)."""
    return Path(os.path.relpath(audio.resolve(), out_dir.resolve())).as_posix()


def _unlabelled(recordings_dir: Path, out_dir: Path, labels: list[Label]) -> list[str]:
    labelled = {label.path.resolve() for label in labels}
    skip = (out_dir / CONVERTED_DIR).resolve()
    return sorted(
        str(path.relative_to(recordings_dir))
        for path in recordings_dir.rglob("*")
        if path.suffix.lower() in _AUDIO_SUFFIXES and path.is_file() and path.resolve() not in labelled
        and skip not in path.resolve().parents
    )  # fmt: skip
