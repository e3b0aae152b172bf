"""The bundled audio corpus: spoken commands with expected intents, as 16 kHz mono PCM16 WAVs.

``manifest.csv`` lists every utterance (``id, text, expected_intent, reply_check, path, voice,
words_per_minute, snr_db, kind``); ``wav/`` holds the files, made by
``python -m audio_corpus.build`` from espeak-ng. Load them with::

    from audio_corpus import load_corpus
    corpus = load_corpus(select="GREETING,kind:clean")
    for frame in corpus[0].frames(1024):  # zero-copy memoryviews, shared by all users
        ...

This package imports neither Locust nor gevent.
"""

from .loader import (
    DEFAULT_MANIFEST,
    KINDS,
    MANIFEST_COLUMNS,
    Corpus,
    CorpusWarning,
    Utterance,
    check_reply,
    find_speech,
    load_corpus,
    load_utterance_file,
    parse_reply_check,
)

__all__ = [
    "DEFAULT_MANIFEST",
    "KINDS",
    "MANIFEST_COLUMNS",
    "Corpus",
    "CorpusWarning",
    "Utterance",
    "check_reply",
    "find_speech",
    "load_corpus",
    "load_utterance_file",
    "parse_reply_check",
]
