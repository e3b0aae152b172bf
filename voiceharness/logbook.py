"""The guide's log: levels success / info / warning / error, lines like
``[12:34:56] Intent received: GREETING``, exportable as txt or JSON lines.

A :class:`Logbook` forwards each entry to Python logging (success is logged at INFO with a
``SUCCESS`` tag) and, when an export file is set, appends it there at once so a killed run
keeps its log. With ``redact`` on, tokens, transcripts and reply texts, and every word a
message quotes, are replaced before anything is written: logs may hold sensitive data (the
guide's own warning).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import IO

LEVELS = ("success", "info", "warning", "error")
_PY_LEVEL = {"success": logging.INFO, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
REDACTED = "[redacted]"
_TOKEN_PATTERN = re.compile(r"(token=|Bearer\s+)[^\s&\"']+", re.IGNORECASE)
# Words quoted in a detail ("heard 'hello world'", "reply 'what you said' does not contain ..."):
# every detail that carries what a user or the gateway said quotes it.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def redact_text(text: str) -> str:
    """Hide tokens in URLs and headers; transcripts are redacted by the caller, who knows them."""
    return _TOKEN_PATTERN.sub(lambda m: m.group(1) + REDACTED, text)


def redact_transcript(text: str) -> str:
    """A transcript or reply text as it may appear with ``--redact``: gone, if there was one."""
    return REDACTED if text else text


def redact_quoted(text: str) -> str:
    """A free-text detail with what it quotes (the user's or the gateway's words) replaced."""
    return _QUOTED.sub(REDACTED, text) if text else text


class Logbook:
    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        export_path: str | None = None,
        export_format: str = "txt",
        redact: bool = False,
    ) -> None:
        if export_format not in ("txt", "json"):
            raise ValueError(f"log export format must be txt or json, got {export_format!r}")
        self.logger = logger or logging.getLogger("voice")
        self.redact = redact
        self.export_format = export_format
        self._lock = threading.Lock()
        # The logbook holds the file open for its lifetime: close() closes it.
        self._file: IO[str] | None = (
            open(export_path, "a", encoding="utf-8") if export_path else None  # noqa: SIM115 (held until close())
        )
        self.counts = dict.fromkeys(LEVELS, 0)

    def transcript(self, text: str) -> str:
        """A transcript (or a reply text) as it may appear in logs and records."""
        return redact_transcript(text) if self.redact else text

    def words(self, text: str) -> str:
        """A free-text detail as it may appear in logs and records: with ``redact``, what it quotes
        (the user's or the gateway's words) is replaced."""
        return redact_quoted(text) if self.redact else text

    def log(self, level: str, message: str, *, echo: bool = True, **fields: object) -> None:
        self.counts[level] += 1
        if not echo and self._file is None:
            return  # nowhere to write it (a line per turn: no redaction pass for nothing)
        message = self.words(redact_text(message))
        if echo:
            tag = "SUCCESS " if level == "success" else ""
            self.logger.log(_PY_LEVEL[level], "%s%s", tag, message)
        if self._file is not None:
            now = time.time()
            if self.export_format == "txt":
                line = f"[{time.strftime('%H:%M:%S', time.localtime(now))}] {level.upper():7} {message}\n"
            else:
                entry = {"time": round(now, 3), "level": level, "message": message}
                entry.update({k: v for k, v in fields.items() if v is not None})
                line = json.dumps(entry) + "\n"
            with self._lock:
                self._file.write(line)
                self._file.flush()

    def success(self, message: str, **fields: object) -> None:
        self.log("success", message, **fields)

    def info(self, message: str, **fields: object) -> None:
        self.log("info", message, **fields)

    def warning(self, message: str, **fields: object) -> None:
        self.log("warning", message, **fields)

    def error(self, message: str, **fields: object) -> None:
        self.log("error", message, **fields)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
