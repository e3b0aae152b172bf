"""A progress line on stderr while a large file is read.

Shown when the file is at least :data:`LARGE_FILE_BYTES` and stderr is a terminal, or always
when forced (``--progress always``); never with ``--progress never``. On a terminal the line
redraws itself; elsewhere (a forced CI log) it prints one line per tenth, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

LARGE_FILE_BYTES = 20 * 1024 * 1024
MODES = ("auto", "always", "never")


def wanted(mode: str, total_bytes: int, stream: TextIO) -> bool:
    """Whether to show progress for a file of ``total_bytes`` on ``stream`` in ``mode``."""
    if mode == "never":
        return False
    if mode == "always":
        return True
    isatty = getattr(stream, "isatty", None)
    return total_bytes >= LARGE_FILE_BYTES and bool(isatty and isatty())


class Progress:
    """Reports bytes read out of ``total_bytes``; a no-op when not :func:`wanted`."""

    def __init__(self, label: str, total_bytes: int, *, mode: str = "auto", stream: TextIO | None = None):
        self.label = label
        self.total_bytes = max(int(total_bytes), 1)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = wanted(mode, total_bytes, self.stream)
        isatty = getattr(self.stream, "isatty", None)
        self._redraw = bool(isatty and isatty())
        self._started = time.monotonic()
        self._last_tenth = -1
        self._last_draw = 0.0

    def update(self, done_bytes: int) -> None:
        if not self.enabled:
            return
        fraction = min(done_bytes / self.total_bytes, 1.0)
        text = (
            f"analysis: reading {self.label}: {fraction:4.0%} "
            f"({done_bytes / 1e6:.0f}/{self.total_bytes / 1e6:.0f} MB)"
        )
        if self._redraw:
            now = time.monotonic()
            if now - self._last_draw >= 0.1 or fraction >= 1.0:
                self.stream.write("\r" + text)
                self.stream.flush()
                self._last_draw = now
        else:
            tenth = int(fraction * 10)
            if tenth > self._last_tenth:
                self.stream.write(text + "\n")
                self.stream.flush()
                self._last_tenth = tenth

    def close(self) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self._started
        end = f" done in {elapsed:.1f} s\n"
        self.stream.write(end if self._redraw else f"analysis: reading {self.label}:{end}")
        self.stream.flush()
