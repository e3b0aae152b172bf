"""What a corpus build makes, and where the bundled corpus lives: the leaf every builder shares.

A :class:`Spec` is one utterance to synthesise (text, intent, voice, rate, and for a noisy copy
its noise and SNR); its ``id`` and ``path`` are what the manifest lists. :func:`manifest_rows`
turns specs into the rows :func:`audio_corpus.manifest.write_manifest` writes, and every build
records how it was made in :data:`BUILD_INFO` beside its manifest.

The bundled recipe (:mod:`audio_corpus.recipe`), one's own phrases (:mod:`audio_corpus.phrases`),
one's own recordings (:mod:`audio_corpus.recordings`) and the loader all import this module; it
imports none of them, so ``python -m audio_corpus.build`` runs its module once.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MANIFEST = PACKAGE_DIR / "manifest.csv"
WAV_DIR = "wav"
BUILD_INFO = "build-info.json"


@dataclass(frozen=True)
class Spec:
    """One utterance to build. ``noise`` is "white" or "pink" for a noisy copy, else ""."""

    text: str
    intent: str
    voice: str
    words_per_minute: int
    kind: str = "clean"
    reply_check: str = ""
    snr_db: int | None = None
    noise: str = ""

    @property
    def id(self) -> str:
        voice = self.voice.replace("+", "-")
        base = f"{self.intent.lower()}_{text_slug(self.text)}_{voice}_{self.words_per_minute}"
        return f"{base}_snr{self.snr_db}_{self.noise}" if self.noise else base

    @property
    def path(self) -> str:
        return f"{WAV_DIR}/{self.id}.wav"

    @property
    def source(self) -> Spec:
        """The clean utterance a noisy copy is made from (itself when clean)."""
        return Spec(self.text, self.intent, self.voice, self.words_per_minute, "clean", self.reply_check)


def text_slug(text: str) -> str:
    """The words of ``text`` in lower case joined by ``_``, for ids (``crc32`` hex of a text with none)."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower().replace("'", "")).strip("_")
    return slug or f"u{zlib.crc32(text.encode('utf-8')):08x}"


def manifest_rows(specs: Iterable[Spec]) -> list[dict[str, object]]:
    """The manifest rows of ``specs`` (see :func:`audio_corpus.manifest.write_manifest`)."""
    return [
        {"id": s.id, "text": s.text, "expected_intent": s.intent, "reply_check": s.reply_check,
         "path": s.path, "voice": s.voice, "words_per_minute": s.words_per_minute, "snr_db": s.snr_db,
         "kind": s.kind}
        for s in specs
    ]  # fmt: skip
