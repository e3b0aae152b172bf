"""The RIFF/WAVE structure of a corpus file, checked before libsndfile reads it.

libsndfile reads some broken WAVs leniently (a truncated data chunk, a data chunk whose size is
not a whole number of sample frames) and would hand the harness part of an utterance without
a word. :func:`check_riff_wav` walks the chunks itself and refuses those with a
:class:`~voiceharness.errors.CorpusError` naming the file, what is wrong and what to do.
"""

from __future__ import annotations

from pathlib import Path

from voiceharness.errors import CorpusError


def check_riff_wav(path: Path, data: bytes) -> None:
    """Refuse RIFF/WAVE files libsndfile would read leniently: truncated or mis-sized data."""
    if len(data) < 12 or data[8:12] != b"WAVE":
        raise CorpusError(
            f"corpus file {path} is a RIFF file but not a complete WAVE file ({len(data)} bytes); "
            f"rebuild or re-export it as a WAV"
        )
    block_align = 0
    position = 12
    while position + 8 <= len(data):
        chunk_id = data[position : position + 4]
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        body = position + 8
        available = len(data) - body
        if chunk_id == b"fmt ":
            if size < 16 or available < 16:
                raise CorpusError(f"corpus file {path} has a truncated fmt chunk; rebuild or re-export it")
            block_align = int.from_bytes(data[body + 12 : body + 14], "little")
        elif chunk_id == b"data":
            if block_align == 0:
                raise CorpusError(
                    f"corpus file {path} has no valid fmt chunk before its data; rebuild or re-export it"
                )
            if size == 0xFFFFFFFF:
                # Written to a pipe: the size was never filled in. libsndfile reads to the end.
                size = available - available % block_align
            if size > available:
                raise CorpusError(
                    f"corpus file {path} is truncated: its data chunk declares {size} bytes but only "
                    f"{available} follow; the file was cut short, rebuild or re-copy it"
                )
            if size == 0:
                raise CorpusError(
                    f"corpus file {path} holds zero-length audio (its data chunk is empty); "
                    f"re-record or rebuild it"
                )
            if size % block_align:
                raise CorpusError(
                    f"corpus file {path} has a data chunk of {size} bytes, not a whole number of "
                    f"{block_align}-byte sample frames (odd byte count); the writer is broken or the "
                    f"file was cut mid-sample, rebuild or re-export it"
                )
            return
        elif size > available:
            raise CorpusError(
                f"corpus file {path} is truncated inside its {chunk_id!r} chunk (declares {size} "
                f"bytes, {available} follow); rebuild or re-copy it"
            )
        position = body + size + (size & 1)  # RIFF chunks are padded to an even length
    raise CorpusError(
        f"corpus file {path} has no data chunk (truncated, or not a WAV file); rebuild or re-export it"
    )
