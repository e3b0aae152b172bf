"""The small CSV files people write by hand for a build (phrases, labels), and the folder it writes.

::

    read_table(path, columns, *, required, what) -> tuple[list[TableRow], list[str]]  # rows, problems
    raise_problems(path, what, problems) -> None         # one CorpusError listing them all
    prepare_output(out_dir, *, stale_wavs=None) -> Path  # the manifest path to write

A table has the given ``columns`` in that order; the last ones may be left out of a line
(``required`` are not optional). Its first line may be a header naming the columns, recognised
by its first cell being the first column's name or every cell a column's name (any case); with a header the columns may come in any
order. Blank lines and lines whose first cell starts with ``#`` are skipped. Problems name the
file and its line, all of them at once, so one run shows everything to fix.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from voiceharness.errors import CorpusError

from .manifest import MANIFEST_COLUMNS

_SHOWN_PROBLEMS = 20


@dataclass(frozen=True)
class TableRow:
    """One line of a table: its line number (1-based, as an editor shows it) and its cells."""

    line: int
    cells: dict[str, str]  # every column; "" when the line leaves it out


def read_table(
    path: str | Path, columns: Sequence[str], *, required: int, what: str
) -> tuple[list[TableRow], list[str]]:
    """The well-formed rows of a hand-written CSV table, and the problems of the others.

    Each problem is ``line N: ...``; the caller adds its own about the cells and raises them
    all with :func:`raise_problems`. CorpusError at once for a missing or unreadable file, a
    bad header, or a table with no rows at all.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{what} {path} not found; pass the path of a CSV file ({','.join(columns)})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"{what} {path} cannot be read as UTF-8 text: {error}") from None
    reader = csv.reader(text.splitlines())
    order: Sequence[str] = columns
    problems: list[str] = []
    rows: list[TableRow] = []
    first = True
    for raw in reader:
        line = reader.line_num
        cells = [cell.strip() for cell in raw]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if first:
            first = False
            if cells[0].lower() == columns[0] or all(cell.lower() in columns for cell in cells if cell):
                order = [cell.lower() for cell in cells]
                unknown = [name for name in order if name not in columns]
                missing = [name for name in columns[:required] if name not in order]
                if unknown or missing or len(set(order)) != len(order):
                    raise CorpusError(
                        f"{what} {path}, line {line}: a header must name columns among "
                        f"{','.join(columns)} ({','.join(columns[:required])} required), once each; "
                        f"it has {','.join(order)}"
                    )
                continue
        if len(cells) > len(order):
            problems.append(
                f"line {line}: {len(cells)} cells, but the columns are {','.join(order)} "
                f"(quote a cell that holds a comma)"
            )
            continue
        named = dict(zip(order, cells, strict=False))
        absent = [name for name in columns[:required] if not named.get(name)]
        if absent:
            problems.append(f"line {line}: no {' and no '.join(absent)} (the columns are {','.join(order)})")
            continue
        rows.append(TableRow(line, {name: named.get(name, "") for name in columns}))
    if not problems and not rows:
        raise CorpusError(f"{what} {path} has no rows (each line: {','.join(columns)})")
    return rows, problems


def raise_problems(path: str | Path, what: str, problems: Sequence[str]) -> None:
    """One CorpusError listing ``problems`` (the first 20) of ``path``; nothing when there are none."""
    if not problems:
        return
    problems = sorted(problems, key=_line_number)
    if len(problems) == 1:
        raise CorpusError(f"{what} {path}, {problems[0]}")
    shown = list(problems[:_SHOWN_PROBLEMS])
    if len(problems) > _SHOWN_PROBLEMS:
        shown.append(f"... and {len(problems) - _SHOWN_PROBLEMS} more")
    raise CorpusError(f"{what} {path} has {len(problems)} problems:\n  " + "\n  ".join(shown))


def prepare_output(out_dir: Path, *, stale_wavs: str | None = None) -> Path:
    """Make ``out_dir`` ready for a build; the path of the manifest to write there.

    A manifest already in ``out_dir`` must be one (its first line the manifest header): a build
    never overwrites a file it did not write. With ``stale_wavs`` (a sub-folder name), the WAVs
    in that sub-folder which the old manifest lists are removed, so a rebuild with fewer phrases
    leaves no stale files; nothing else is ever removed.
    """
    manifest = out_dir / "manifest.csv"
    if manifest.exists():
        try:
            lines = manifest.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError):
            lines = []
        if not lines or next(csv.reader(lines[:1]), []) != list(MANIFEST_COLUMNS):
            raise CorpusError(
                f"{manifest} exists and is not a corpus manifest; pass another --out folder or move it"
            )
        if stale_wavs:
            stale_folder = (out_dir / stale_wavs).resolve()
            for row in csv.DictReader(lines):
                listed = (out_dir / (row.get("path") or "")).resolve()
                if listed.parent == stale_folder and listed.suffix == ".wav" and listed.is_file():
                    listed.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    return manifest


def _line_number(problem: str) -> int:
    """The N of a "line N: ..." problem, so that problems are listed in file order."""
    head = problem.split(":", 1)[0]
    return int(head[5:]) if head.startswith("line ") and head[5:].isdigit() else 0
