"""Audio corpora: spoken commands with expected intents, as 16 kHz mono PCM16 utterances.

The bundled corpus: ``manifest.csv`` lists every utterance (``id, text, expected_intent,
reply_check, path, voice, words_per_minute, snr_db, kind``); ``wav/`` holds the files, made by
``python -m audio_corpus.build`` from espeak-ng. Load it, or a manifest of one's own, with::

    from audio_corpus import load_corpus
    corpus = load_corpus(select="GREETING,kind:clean")
    for frame in corpus[0].frames(1024):  # zero-copy memoryviews, shared by all users
        ...

Anything a scenario names, as an utterance (:mod:`audio_corpus.resolve` has the rules)::

    from audio_corpus import resolve_utterance
    resolve_utterance("greeting_hello_jarvis_en-us_160")     # an id of the (bundled) corpus
    resolve_utterance("recordings/lights_off.wav")           # a file, converted when needed
    resolve_utterance("turn off the kitchen lights", voice="en+m3", rate_wpm=130,
                      expected_intent="LIGHTS_OFF")           # text: espeak-ng, cached on disk

Corpora of one's own, for ``--corpus-manifest DIR/manifest.csv``::

    python -m audio_corpus.build --from-text phrases.csv --voices en-us,en+m3 --rates 130,160 --out DIR
    python -m audio_corpus.build --from-dir DIR --labels labels.csv [--out OUTDIR]

API::

    load_corpus(manifest=None, *, select=None) -> Corpus
    load_utterance_file(path, *, expected_intent, utterance_id=None, ...) -> Utterance
    resolve_utterance(what, *, corpus=None, voice="en-us", rate_wpm=160, expected_intent="",
                      reply_check="") -> Utterance
    text_utterance(text, *, voice="en-us", rate_wpm=160, expected_intent="", reply_check="")
        -> Utterance
    text_utterance_id(text, voice, rate_wpm) -> str
    speech_cache_root() -> Path        # $VOICE_HARNESS_CACHE, $XDG_CACHE_HOME/voice-harness, ~/.cache/...
    build_from_text(phrases_csv, out_dir, voices, rates, *, quiet=False) -> list[Spec]
    build_from_dir(recordings_dir, labels_csv, out_dir=None, *, quiet=False) -> Corpus
    check_reply(utterance, intent, reply_text) -> str | None
    check_intent_name(intent, *, standard_only=False) -> str | None
    find_speech(samples, sample_rate_hz) -> tuple[int, int]     # voiceharness.vad's
    write_manifest(path, rows) -> None

Errors are :class:`voiceharness.errors.CorpusError` (one line naming the file, line or text and
what to do); conversions and other things worth knowing are :class:`CorpusWarning`.
This package imports neither Locust nor gevent.
"""

from voiceharness.vad import find_speech

from .loader import (
    DEFAULT_MANIFEST,
    KINDS,
    MANIFEST_COLUMNS,
    Corpus,
    CorpusWarning,
    Utterance,
    check_intent_name,
    check_reply,
    load_corpus,
    load_utterance_file,
    parse_reply_check,
    write_manifest,
)
from .resolve import bundled_corpus, resolve_utterance, text_utterance, text_utterance_id
from .speech_cache import cache_root as speech_cache_root


def __getattr__(name: str):
    # The builders import audio_corpus.build; importing it here would make
    # `python -m audio_corpus.build` find the module loaded twice (runpy's RuntimeWarning).
    if name == "build_from_text":
        from .phrases import build_from_text

        return build_from_text
    if name == "build_from_dir":
        from .recordings import build_from_dir

        return build_from_dir
    raise AttributeError(f"module 'audio_corpus' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MANIFEST",
    "KINDS",
    "MANIFEST_COLUMNS",
    "Corpus",
    "CorpusWarning",
    "Utterance",
    "build_from_dir",
    "build_from_text",
    "bundled_corpus",
    "check_intent_name",
    "check_reply",
    "find_speech",
    "load_corpus",
    "load_utterance_file",
    "parse_reply_check",
    "resolve_utterance",
    "speech_cache_root",
    "text_utterance",
    "text_utterance_id",
    "write_manifest",
]
