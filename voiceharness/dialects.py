"""Dialects: the protocol choices of one kind of voice gateway (or client), as one preset.

A gateway speaks the SmartJARVIS protocol in its own way, and the harness must talk to it the
way it expects (docs/protocol.md, "Dialects"). ``--dialect NAME`` sets these choices at once; every explicit flag
(``--ws-path``, ``--end-marker``/``--no-end-marker``, ``--trailing-silence-ms``,
``--header-format``, ``--mic-during-reply``, ``--reply-format``, ``--reply-expectations``)
overrides its part.

==================  =========================================================================
reference           the bundled reference gateway and the protocol as documented: ``/ws/audio``,
                    binary JSON header, the ``{"type": "end"}`` marker and no extra silence,
                    metadata + PCM frames + ``reply_end`` back
smartjarvis         the gateway SmartJARVIS publishes: every message after the header is audio
                    to it (an end marker would reach its recogniser as 15 bytes of audio), so no
                    marker and enough trailing silence for its silence endpointer (1000 ms;
                    at least 700), a text JSON header, and one WAV message back, judged by ear
                    against the SmartJARVIS reply phrasing
browser-tester      the original browser page: ``/ws``, binary header, no marker, and a
                    microphone that stays open until Stop (silence goes on while the reply plays)
==================  =========================================================================

Every connection sends a fresh ``sessionId``: the published gateway keys sessions by it, and a
second connection with the same id would take the first one's replies.
"""

from __future__ import annotations

from dataclasses import dataclass

from voiceharness import guide
from voiceharness.errors import UsageError
from voiceharness.protocol import ReplyFormat

# Less trailing silence than this and a silence endpointer (SmartJARVIS's Vosk chain, the
# reference gateway's 500 ms VAD) may never see the end of the utterance.
MIN_ENDPOINTER_SILENCE_MS = 700


@dataclass(frozen=True)
class Dialect:
    name: str
    ws_path: str
    end_marker: bool
    trailing_silence_ms: int
    header_as_binary: bool
    mic_during_reply: str  # "open" or "closed" (see voiceharness.protocol.ClientSession)
    reply_format: ReplyFormat
    expectations: str  # the reply expectations a reply without metadata is judged against

    def describe(self) -> str:
        marker = "end marker" if self.end_marker else "no end marker"
        return (f"{self.name}: {self.ws_path}, {'binary' if self.header_as_binary else 'text'} header, {marker}, "
                f"{self.trailing_silence_ms} ms trailing silence, mic {self.mic_during_reply} during the reply, "
                f"replies {self.reply_format.value}")


DIALECTS: dict[str, Dialect] = {
    "reference": Dialect("reference", guide.WS_PATH_GATEWAY, True, 0, True, "closed", ReplyFormat.AUTO, "reference"),
    "smartjarvis": Dialect("smartjarvis", guide.WS_PATH_GATEWAY, False, 1000, False, "closed", ReplyFormat.AUTO,
                           "smartjarvis"),
    "browser-tester": Dialect("browser-tester", guide.WS_PATH_BROWSER_TESTER, False, 1000, True, "open",
                              ReplyFormat.AUTO, "reference"),
}


def dialect(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise UsageError(f"unknown dialect {name!r}; choose one of {', '.join(DIALECTS)}") from None
