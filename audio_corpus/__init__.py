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
    check_intent_name(intent, *, standard_only=False) -> str | None
    find_speech(samples, sample_rate_hz) -> tuple[int, int]     # voiceharness.vad's
    write_manifest(path, rows) -> None

Whether a reply says what an utterance expects (its intent, and its ``reply_check`` clause)
is judging, not corpus logic: :func:`voiceharness.reply_check.check_reply`.

Errors are :class:`voiceharness.errors.CorpusError` (one line naming the file, line or text and
what to do); conversions and other things worth knowing are :class:`CorpusWarning`.
This package imports neither Locust nor gevent.

The modules, each one concept, leaves first: ``specs`` (what a build makes, where the bundled
corpus lives), ``selection`` (the selection language), ``intents`` (intent names), ``riff``
(WAV structure checks), ``model`` (Utterance, Corpus), ``audio_file`` (reading one file),
``manifest`` (reading and writing a manifest), ``synthesis`` and ``speech_cache`` (espeak-ng
speech, cached on disk), ``resolve`` (an utterance from anything a scenario names), ``tables``
(the CSVs of one's own corpora), ``recipe`` (the bundled corpus), ``phrases`` and
``recordings`` (corpora of one's own), and ``build``, the command line.
"""

from voiceharness.vad import find_speech

from .audio_file import load_utterance_file
from .intents import check_intent_name
from .manifest import MANIFEST_COLUMNS, load_corpus, write_manifest
from .model import KINDS, Corpus, CorpusWarning, Utterance
from .phrases import build_from_text
from .recordings import build_from_dir
from .resolve import bundled_corpus, resolve_utterance, text_utterance, text_utterance_id
from .specs import DEFAULT_MANIFEST
from .speech_cache import cache_root as speech_cache_root

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
    "find_speech",
    "load_corpus",
    "load_utterance_file",
    "resolve_utterance",
    "speech_cache_root",
    "text_utterance",
    "text_utterance_id",
    "write_manifest",
]
