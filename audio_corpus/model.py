"""The corpus's data model: an :class:`Utterance` (its audio once, as immutable bytes, and what it
should get back) and a :class:`Corpus` (an ordered, immutable collection of them).

An :class:`Utterance` holds its audio once, as immutable ``bytes``; :meth:`Utterance.frames`
hands out zero-copy ``memoryview`` slices of it, cached per chunk size, so a thousand
simulated users streaming the same utterance share one buffer and one tuple of frames.
:meth:`Corpus.select` narrows a corpus down with the selection language of
:mod:`audio_corpus.selection`. Reading manifests and files is :mod:`audio_corpus.manifest` and
:mod:`audio_corpus.audio_file`; this module reads nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import overload

import numpy as np

from voiceharness.errors import CorpusError
from voiceharness.guide import CHUNK_SAMPLES, INTENTS, SAMPLE_WIDTH_BYTES

from . import selection

# clean: synthesised speech; noisy: a clean utterance with noise added at snr_db;
# unknown: out-of-grammar speech that must come back UNKNOWN.
KINDS = ("clean", "noisy", "unknown")


class CorpusWarning(UserWarning):
    """A corpus file was usable but had to be converted (sample rate, channels, sample format).

    Also: a custom intent one letter from a standard one, a rebuilt speech cache file, speech
    with no trailing silence. ``reasons`` lists the conversions done, for callers that act on them.
    """

    def __init__(self, message: str, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reasons = reasons


@dataclass(frozen=True)
class Utterance:
    """One utterance of the corpus, its audio decoded to 16 kHz mono PCM16 little-endian.

    ``pcm`` is immutable and shared by every user that streams the utterance; do not copy it
    per user, slice it with :meth:`frames`. Sample positions count samples (not bytes) from the
    start of the file: ``speech_start_sample`` is the first sample of the first speech window,
    ``speech_end_sample`` one past the last sample of the last speech window (both 0 when the
    file holds no speech at all).
    """

    id: str
    text: str
    expected_intent: str  # INTENTS for the bundled corpus; any [A-Z0-9_] name; "" for no expectation
    reply_check: str  # the reply_check mini-language, "" for no check
    kind: str  # one of KINDS
    snr_db: float | None  # signal-to-noise ratio of a noisy copy in dB, None for clean speech
    path: Path
    sample_rate_hz: int  # always SAMPLE_RATE_HZ (16000) after loading
    pcm: bytes = field(repr=False)
    speech_start_sample: int
    speech_end_sample: int
    voice: str = ""  # espeak-ng voice that spoke it, "" for recorded files
    words_per_minute: int | None = None  # espeak-ng speaking rate, None for recorded files
    # chunk_samples -> tuple of frames; shared by everyone holding this Utterance.
    _frames_cache: dict[int, tuple[memoryview, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    @property
    def num_samples(self) -> int:
        """Length of the audio in samples (at ``sample_rate_hz``)."""
        return len(self.pcm) // SAMPLE_WIDTH_BYTES

    @property
    def duration_ms(self) -> float:
        """Length of the audio in milliseconds, leading and trailing silence included."""
        return self.num_samples * 1000.0 / self.sample_rate_hz

    @property
    def speech_start_ms(self) -> float:
        """Where speech starts, in milliseconds from the start of the file."""
        return self.speech_start_sample * 1000.0 / self.sample_rate_hz

    @property
    def speech_end_ms(self) -> float:
        """Where speech ends, in milliseconds from the start of the file (end of speech)."""
        return self.speech_end_sample * 1000.0 / self.sample_rate_hz

    @property
    def samples(self) -> np.ndarray:
        """The audio as a read-only int16 numpy array viewing ``pcm`` (no copy)."""
        return np.frombuffer(self.pcm, dtype="<i2")

    def frames(self, chunk_samples: int = CHUNK_SAMPLES) -> tuple[memoryview, ...]:
        """The audio cut into frames of ``chunk_samples`` samples (``2 * chunk_samples`` bytes).

        Each frame is a read-only ``memoryview`` slice of :attr:`pcm` (``frame.obj is pcm``):
        nothing is copied. The last frame is *short* when the length is not a multiple of
        ``chunk_samples`` (it is not zero-padded; the trailing silence is already in the file).
        The tuple is built once per chunk size and cached on the utterance, so every caller
        gets the same tuple; it is a tuple so that no caller can change it for the others.
        """
        cached = self._frames_cache.get(chunk_samples)
        if cached is not None:
            return cached
        if not isinstance(chunk_samples, int) or chunk_samples <= 0:
            raise ValueError(f"chunk_samples must be a positive integer, not {chunk_samples!r}")
        step = chunk_samples * SAMPLE_WIDTH_BYTES
        view = memoryview(self.pcm)
        built = tuple(view[offset : offset + step] for offset in range(0, len(self.pcm), step))
        # setdefault is atomic: if two threads race, both get the first tuple stored.
        return self._frames_cache.setdefault(chunk_samples, built)

    def frame_count(self, chunk_samples: int = CHUNK_SAMPLES) -> int:
        """How many frames :meth:`frames` returns for ``chunk_samples``."""
        return -(-self.num_samples // chunk_samples)

    def speech_end_frame(self, chunk_samples: int = CHUNK_SAMPLES) -> int:
        """Index (0-based) of the frame that holds the last speech sample.

        Handing this frame to the socket is "end of speech" for the roundtrip metric.
        0 when the file holds no speech.
        """
        return max(self.speech_end_sample - 1, 0) // chunk_samples


class Corpus(Sequence[Utterance]):
    """An ordered, immutable collection of utterances (manifest order).

    ``corpus[i]`` and iteration give :class:`Utterance` objects; ``corpus.by_id`` is a
    read-only mapping from id to utterance; :meth:`select` narrows it down.
    """

    def __init__(self, utterances: Iterable[Utterance], *, source: Path | None = None) -> None:
        self._utterances: tuple[Utterance, ...] = tuple(utterances)
        self.source = source  # the manifest the utterances came from, None when built in code
        by_id: dict[str, Utterance] = {}
        for utterance in self._utterances:
            if utterance.id in by_id:
                raise CorpusError(f"{source or 'corpus'}: duplicate utterance id {utterance.id!r}")
            by_id[utterance.id] = utterance
        self.by_id: Mapping[str, Utterance] = MappingProxyType(by_id)

    @overload
    def __getitem__(self, index: int) -> Utterance: ...
    @overload
    def __getitem__(self, index: slice) -> Corpus: ...
    def __getitem__(self, index: int | slice) -> Utterance | Corpus:
        if isinstance(index, slice):
            return Corpus(self._utterances[index], source=self.source)
        return self._utterances[index]

    def __len__(self) -> int:
        return len(self._utterances)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self._utterances)

    def __repr__(self) -> str:
        return f"<Corpus {len(self)} utterances from {self.source}: {self.counts('expected_intent')}>"

    def intents(self) -> tuple[str, ...]:
        """The expected intents present: the standard ones in ``INTENTS`` order, then others by name."""
        present = {u.expected_intent for u in self._utterances if u.expected_intent}
        standard = tuple(intent for intent in INTENTS if intent in present)
        return standard + tuple(sorted(present - set(standard)))

    def counts(self, attribute: str = "expected_intent") -> dict[str, int]:
        """How many utterances have each value of ``attribute`` (e.g. ``"kind"``)."""
        result: dict[str, int] = {}
        for utterance in self._utterances:
            key = str(getattr(utterance, attribute))
            result[key] = result.get(key, 0) + 1
        return result

    def select(self, spec: str | None) -> Corpus:
        """The utterances matching ``spec``, in the selection language of :mod:`audio_corpus.selection`.

        ``None`` or ``""`` selects everything. A filter that matches no utterance, or a selection
        that ends up empty, raises CorpusError listing what is available.
        """
        if spec is None or not spec.strip():
            return self
        chosen = selection.select(
            self._utterances, spec, intents=self.intents(), kinds=KINDS, where=str(self.source or "the corpus")
        )
        return Corpus(chosen, source=self.source)
