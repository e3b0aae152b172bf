"""What a check found, and how a check is run again: the layer between the checks and the CLI.

A :class:`Result` is printed as text (its lines, then ``Verdict: ...``) or as one JSON object
(``--json``); its ``exit_code`` is the process's: :data:`EXIT_PASS`, :data:`EXIT_FAIL`,
:data:`EXIT_COULD_NOT_RUN`. :func:`with_attempts` repeats a check whose failure may be a dropout
of a busy machine (``--attempts``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voiceharness import diagnoses

from .devices import OpenedDevice, StreamDropped

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_COULD_NOT_RUN = 2

@dataclass
class Result:
    """What a command found: printed as text, or as one JSON object with ``--json``."""

    command: str
    exit_code: int
    verdict: str
    advice: str = ""
    lines: list[str] = field(default_factory=list)  # the text report, line by line
    data: dict[str, Any] = field(default_factory=dict)  # the numbers, for --json
    diagnosis: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "command": self.command,
            "passed": self.exit_code == EXIT_PASS,
            "exit_code": self.exit_code,
            "verdict": self.verdict,
            "advice": self.advice,
        }
        out.update(self.data)
        if self.diagnosis:
            out["diagnosis"] = _diagnosis_json(self.diagnosis)
        return out


def _diagnosis_json(code: str) -> dict[str, Any]:
    d = diagnoses.DIAGNOSES.get(code)
    if d is None:
        return {"code": code}
    return {
        "code": code,
        "headline": d.headline,
        "finding": d.finding,
        "causes": list(d.causes),
        "fixes": list(d.fixes),
    }


def device_line(kind: str, opened: OpenedDevice) -> str:
    line = f"{kind}: {opened.index} {opened.name}, {opened.rate_hz} Hz mono"
    return line + (f" ({opened.note})" if opened.note else "")


def with_attempts(
    run_once: Callable[[], Result], attempts: int, retry: Callable[[Result], bool], summary: tuple[str, ...]
) -> Result:
    """Run a check up to ``attempts`` times while ``retry(result)`` says the failure may be a
    dropout (a busy machine can starve a duplex stream for a block); keep every attempt's numbers."""
    tries: list[Result] = []

    def once() -> Result:
        try:
            return run_once()
        except StreamDropped as error:
            if len(tries) + 1 >= attempts:
                raise
            return Result("", EXIT_COULD_NOT_RUN, "stream dropped", str(error), [], {}, error.diagnosis)

    tries.append(once())
    while len(tries) < attempts and (tries[-1].verdict == "stream dropped" or retry(tries[-1])):
        tries.append(once())
    result = tries[-1]
    if len(tries) > 1:
        result.data["attempts"] = [
            {"verdict": r.verdict} | {k: r.data.get(k) for k in summary} for r in tries
        ]
        result.lines.append(f"Attempts: {len(tries)} (" + ", ".join(r.verdict for r in tries) + ")")
    return result
