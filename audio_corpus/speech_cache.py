"""The on-disk cache of speech synthesised from text: said once by any process, reused by all.

::

    cache_root() -> Path
    speech_path(text, voice, rate_wpm) -> Path
    cached_speech(text, voice, rate_wpm, *, utterance_id, expected_intent="", reply_check="")
        -> Utterance

Layout (one folder, one file per text; deleting any of it at any time is safe)::

    $VOICE_HARNESS_CACHE            (else $XDG_CACHE_HOME/voice-harness, else ~/.cache/voice-harness)
    └── speech/
        └── hello_jarvis.en-us.160wpm.3f9c0a1b2d4e5f60a7b8.wav

The file is exactly what :func:`audio_corpus.synthesis.synthesise` makes, as a 16 kHz mono
PCM16 WAV (the bytes of a ``build --from-text`` WAV of the same text, voice and rate). Its name
is readable (the start of the text, voice, rate) and ends in 20 hex digits of the SHA-256 of
the key: (:data:`~audio_corpus.synthesis.SYNTHESIS_RECIPE`, the espeak-ng version line,
numpy's and scipy's versions, the text, the voice, the rate). A new espeak-ng or a new recipe
makes new files; old ones are never read again.

Many processes may ask for the same text at once (a thousand users on eight workers): each one
that finds no file synthesises into a temporary file in the same folder and renames it into
place (``os.replace``, atomic), so a reader sees either no file or a whole one, never a
partial one; they all write the same bytes. A cached file that does not read back as 16 kHz
mono PCM16 speech (cut short by a full disk, edited, not audio) is synthesised again, with a
:class:`~audio_corpus.CorpusWarning`. When the cache folder cannot be written, speech goes to a
temporary folder of this process, with a warning.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from importlib import metadata
from pathlib import Path

import soundfile

from voiceharness.errors import CorpusError
from voiceharness.guide import SAMPLE_RATE_HZ

from .audio_file import load_utterance_file
from .model import CorpusWarning, Utterance
from .synthesis import SYNTHESIS_RECIPE, espeak_version, synthesise, to_wav_bytes

CACHE_ENV = "VOICE_HARNESS_CACHE"
SPEECH_DIR = "speech"
_KEY_HEX_DIGITS = 20
_TEMP_SUFFIX = ".tmp"
_STALE_TEMP_S = 3600.0  # a temporary file this old was left by a process that died mid-write
_fallback_dir: list[Path] = []  # the process's own folder once the cache proved unwritable


def _synthesise_in_a_child(text: str, voice: str, rate_wpm: int) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import sys; from audio_corpus.speech_cache import main; sys.exit(main())",
         "--voice", voice, "--rate", str(rate_wpm), "--", text],
        capture_output=True, text=True, check=False, timeout=120,
    )
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise CorpusError(f"synthesising {text!r} failed: {message}")


def main(argv: list[str] | None = None) -> int:
    """Fill the speech cache for TEXT (``[--voice V] [--rate R] -- TEXT``): the child process of
    :func:`cached_speech` with ``in_child``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="audio_corpus.speech_cache", description="Fill the speech cache for TEXT.")
    parser.add_argument("--voice", default="en-us")
    parser.add_argument("--rate", type=int, default=160)
    parser.add_argument("text")
    args = parser.parse_args(argv)
    try:
        cached_speech(args.text, args.voice, args.rate, utterance_id="cache")
    except CorpusError as error:
        print(f"speech cache: error: {error}", file=sys.stderr)
        return 2
    return 0


def cache_root() -> Path:
    """``$VOICE_HARNESS_CACHE``, else ``$XDG_CACHE_HOME/voice-harness``, else ``~/.cache/voice-harness``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "voice-harness"
    return Path.home() / ".cache" / "voice-harness"


def speech_path(text: str, voice: str, rate_wpm: int) -> Path:
    """Where the speech of ``text`` in ``voice`` at ``rate_wpm`` is (or will be) cached."""
    key = json.dumps(
        [SYNTHESIS_RECIPE, espeak_version(), _version("numpy"), _version("scipy"), text, voice, rate_wpm],
        ensure_ascii=False,
    )
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:_KEY_HEX_DIGITS]
    words = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40].strip("_") or "text"
    name = f"{words}.{re.sub(r'[^A-Za-z0-9_-]+', '-', voice)}.{rate_wpm}wpm.{digest}.wav"
    folder = _fallback_dir[0] if _fallback_dir else cache_root() / SPEECH_DIR
    return folder / name


def cached_speech(
    text: str, voice: str, rate_wpm: int, *, utterance_id: str, expected_intent: str = "",
    reply_check: str = "", in_child: bool = False,
) -> Utterance:  # fmt: skip
    """The speech of ``text`` as an :class:`Utterance`, from the cache, synthesised on a miss.

    ``in_child``: a load generator's choice. Synthesis (espeak-ng, then scipy's resampler: 40-60 MB
    and a 0.5-2 s import that holds the GIL) runs in a child process that fills the cache, and
    the load generator only reads the file (under gevent the wait for the child is cooperative).

    ``Utterance.path`` is the cache file. CorpusError when espeak-ng is missing or refuses.
    """
    path = speech_path(text, voice, rate_wpm)

    def load(file: Path) -> Utterance:
        return load_utterance_file(
            file, expected_intent=expected_intent, utterance_id=utterance_id, text=text,
            reply_check=reply_check, voice=voice, words_per_minute=rate_wpm,
        )  # fmt: skip

    if path.exists():
        problem = _problem(path)
        if problem is None:
            try:
                utterance = load(path)
            except CorpusError as error:
                problem = str(error)
            else:
                if utterance.speech_end_sample > 0:
                    return utterance
                problem = "it holds no speech"
        warnings.warn(
            f"speech cache file {path} is corrupt ({problem}); synthesising {text!r} again",
            CorpusWarning,
            stacklevel=3,
        )
    if in_child and not _fallback_dir:
        _synthesise_in_a_child(text, voice, rate_wpm)
        problem = _problem(path)
        if problem is None:
            return load(path)
    wav = to_wav_bytes(synthesise(text, voice, rate_wpm))
    try:
        _write_atomically(path, wav)
    except OSError as error:
        if _fallback_dir:
            raise CorpusError(f"cannot write synthesised speech to {path}: {error}") from None
        _fallback_dir.append(Path(tempfile.mkdtemp(prefix="voice-harness-speech-")))
        warnings.warn(
            f"speech cache {path.parent} cannot be written ({error}); synthesised speech goes to "
            f"{_fallback_dir[0]} for this process only. Set ${CACHE_ENV} to a writable folder",
            CorpusWarning,
            stacklevel=3,
        )
        path = speech_path(text, voice, rate_wpm)
        _write_atomically(path, wav)
    return load(path)


def _problem(path: Path) -> str | None:
    """Why ``path`` is not a cache file as this module writes them (None when it is one)."""
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, TypeError, ValueError, OSError) as error:
        return f"not readable audio: {error}"
    if (info.format, info.subtype, info.samplerate, info.channels) != ("WAV", "PCM_16", SAMPLE_RATE_HZ, 1):
        return f"{info.format} {info.subtype} {info.samplerate} Hz {info.channels} channel(s), not 16 kHz mono PCM16"
    return None


def _write_atomically(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` or is as it was: written to a temporary file, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path.parent)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; a shared cache is read by other users
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _remove_stale_temporaries(folder: Path) -> None:
    cutoff = time.time() - _STALE_TEMP_S
    for leftover in folder.glob(f".*{_TEMP_SUFFIX}"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
        except OSError:
            pass  # another process removed it first


@functools.cache
def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"
