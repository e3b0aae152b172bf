"""Load the audio corpus: a manifest of utterances and their 16 kHz mono PCM16 WAV files.

Everything that can be wrong with a corpus is found here, at load time, so a load test never
fails half-way through a run because of a bad file:

* the manifest (``manifest.csv``): missing columns, a bad intent name or an unknown kind, a
  duplicate id, a bad number or reply check -> :class:`~voiceharness.errors.CorpusError` naming
  the manifest and its line;
* each WAV file: missing, empty, truncated, an odd byte count data chunk, zero-length audio
  or not audio at all -> ``CorpusError`` naming the file, what is wrong and what to do;
* a noisy copy (kind ``noisy``) takes its speech bounds from its clean source in the same
  manifest (same text, intent, voice and rate), since noise hides where speech ends;
* a WAV in another sample rate, with several channels or with float / 24-bit samples is
  converted to 16 kHz mono PCM16, with a :class:`CorpusWarning` naming the file.

Intents: the bundled manifest uses exactly the SmartJARVIS NLU's intents
(:data:`voiceharness.guide.INTENTS`), so a typo in it is an error. A manifest of one's own
describes someone else's gateway, whose NLU has its own commands: any name of upper-case
letters, digits and ``_`` (``PLAY_MUSIC``, ``LIGHTS_OFF``) is accepted there, with a
CorpusWarning when it is one letter away from a standard intent (``GREETNG``).

Public API::

    load_corpus(manifest=None, *, select=None) -> Corpus
    load_utterance_file(path, *, expected_intent, utterance_id=None, text="", reply_check="",
                        kind="clean", snr_db=None, voice="", words_per_minute=None,
                        speech_samples=None) -> Utterance
    check_intent_name(intent, *, standard_only=False) -> str | None   # the problem, or None
    write_manifest(path, rows) -> None     # rows: mappings with the MANIFEST_COLUMNS keys
    pcm16_wav_bytes(pcm) -> bytes          # a plain 44-byte-header 16 kHz mono PCM16 WAV
    check_reply(utterance, intent, reply_text) -> str | None
    find_speech(samples, sample_rate_hz) -> tuple[int, int]

An :class:`Utterance` holds its audio once, as immutable ``bytes``; :meth:`Utterance.frames`
hands out zero-copy ``memoryview`` slices of it, cached per chunk size, so a thousand
simulated users streaming the same utterance share one buffer and one tuple of frames.

The ``reply_check`` mini-language (one clause, empty for none; matching ignores case,
punctuation and repeated spaces)::

    contains:hello world      the reply text contains the words "hello world", in that order
    any:sunny|rain|cloud      the reply text contains at least one of the alternatives
    regex:\\d{1,2}            the reply text matches the regular expression (re.search, ignore case)
    nonempty                  the reply text is not empty
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import re
import warnings
import wave
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, overload

import numpy as np
import soundfile

from voiceharness.errors import CorpusError
from voiceharness.guide import CHUNK_SAMPLES, INTENTS, SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES
from voiceharness.vad import find_speech

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MANIFEST = PACKAGE_DIR / "manifest.csv"

MANIFEST_COLUMNS = (
    "id",
    "text",
    "expected_intent",
    "reply_check",
    "path",
    "voice",
    "words_per_minute",
    "snr_db",
    "kind",
)
# clean: synthesised speech; noisy: a clean utterance with noise added at snr_db;
# unknown: out-of-grammar speech that must come back UNKNOWN.
KINDS = ("clean", "noisy", "unknown")

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_INTENT_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_]*$")
_REPLY_CHECK_OPS = ("contains", "any", "regex", "nonempty")
_CONVERT_HINT = "convert it once with `sox IN.wav -r 16000 -c 1 -b 16 -e signed-integer OUT.wav`"


class CorpusWarning(UserWarning):
    """A corpus file was usable but had to be converted (sample rate, channels, sample format).

    Also: a custom intent one letter from a standard one, a rebuilt speech cache file, speech
    with no trailing silence. ``reasons`` lists the conversions done, for callers that act on them.
    """

    def __init__(self, message: str, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reasons = reasons


# --------------------------------------------------------------------------------------------
# Utterance and Corpus
# --------------------------------------------------------------------------------------------


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
        """The utterances matching ``spec``, a comma-separated list of filters.

        A filter is an utterance id, a glob over ids (``greeting_*``), an intent name (a
        standard one or one of this corpus, ``GREETING``, any case), or ``kind:clean|noisy|unknown``, ``voice:en-us``,
        ``intent:ECHO``. Filters of the same sort are alternatives (``GREETING,ECHO`` is
        either); filters of different sorts must all hold (``GREETING,kind:clean`` is clean
        greetings). ``None`` or ``""`` selects everything. A filter that matches no utterance,
        or a selection that ends up empty, raises CorpusError listing what is available.
        """
        if spec is None or not spec.strip():
            return self
        groups: dict[str, list[str]] = {}
        for raw in spec.split(","):
            token = raw.strip()
            if not token:
                continue
            sort, value = self._classify(token)
            matched = [u for u in self._utterances if _matches(u, sort, value)]
            if not matched:
                raise CorpusError(
                    f"corpus filter {token!r} matches no utterance of {self.source or 'the corpus'}. "
                    + self._available()
                )
            groups.setdefault(sort, []).append(value)
        chosen = [
            u
            for u in self._utterances
            if all(any(_matches(u, sort, value) for value in values) for sort, values in groups.items())
        ]
        if not chosen:
            raise CorpusError(
                f"corpus filter {spec!r} matches no utterance (each filter matches some, but not "
                f"together: filters of different sorts must all hold). " + self._available()
            )
        return Corpus(chosen, source=self.source)

    def _classify(self, token: str) -> tuple[str, str]:
        prefix, sep, rest = token.partition(":")
        if sep:
            sort = prefix.strip().lower()
            if sort not in ("kind", "voice", "intent", "id"):
                raise CorpusError(
                    f"corpus filter {token!r}: unknown filter {prefix!r}; use an id, an intent, "
                    f"or kind:, voice:, intent:, id:"
                )
            value = rest.strip()
            return sort, value.upper() if sort == "intent" else value
        if token.upper() in INTENTS or token.upper() in self.intents():
            return "intent", token.upper()
        if any(char in token for char in "*?["):
            return "glob", token
        return "id", token

    def _available(self) -> str:
        ids = ", ".join(u.id for u in self._utterances)
        return (
            f"Available intents: {', '.join(self.intents())}; kinds: "
            f"{', '.join(k for k in KINDS if k in self.counts('kind'))}; ids: {ids}"
        )


def _matches(utterance: Utterance, sort: str, value: str) -> bool:
    from fnmatch import fnmatchcase

    if sort == "id":
        return utterance.id == value
    if sort == "glob":
        return fnmatchcase(utterance.id, value)
    if sort == "intent":
        return utterance.expected_intent == value
    if sort == "kind":
        return utterance.kind == value
    if sort == "voice":
        return utterance.voice == value
    raise AssertionError(sort)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_corpus(manifest: str | Path | None = None, *, select: str | None = None) -> Corpus:
    """Read and validate a manifest and load every WAV it names.

    ``manifest`` defaults to the bundled ``audio_corpus/manifest.csv``; WAV paths in it are
    relative to the manifest's directory. ``select`` is passed to :meth:`Corpus.select`.
    Raises CorpusError for any problem in the manifest or a file; emits CorpusWarning for a
    file that had to be converted. Only the selected files are read.
    """
    manifest_path = Path(manifest) if manifest is not None else DEFAULT_MANIFEST
    rows = _read_manifest(manifest_path)
    # Filter on manifest data first so a narrow selection does not read every file.
    stubs = Corpus((_stub(row) for row in rows), source=manifest_path).select(select)
    wanted = {u.id for u in stubs}
    loaded: dict[str, Utterance] = {}

    def load(row: dict[str, Any], speech_samples: tuple[int, int] | None = None) -> Utterance:
        if row["id"] not in loaded or speech_samples is not None:
            loaded[row["id"]] = load_utterance_file(
                manifest_path.parent / row["path"],
                utterance_id=row["id"],
                expected_intent=row["expected_intent"],
                text=row["text"],
                reply_check=row["reply_check"],
                kind=row["kind"],
                snr_db=row["snr_db"],
                voice=row["voice"],
                words_per_minute=row["words_per_minute"],
                speech_samples=speech_samples,
            )
        return loaded[row["id"]]

    sources = {_source_key(row): row for row in rows if row["kind"] != "noisy"}
    utterances = []
    for row in rows:
        if row["id"] not in wanted:
            continue
        source = sources.get(_source_key(row)) if row["kind"] == "noisy" else None
        if source is None:
            utterances.append(load(row))
            continue
        # Noise at 5 dB SNR hides the quiet ends of words from an energy detector, which would
        # move "end of speech" (and so every roundtrip) by up to 300 ms; a noisy copy has
        # its clean source's timing exactly, so it takes the source's speech bounds.
        clean = load(source)
        noisy = load(row)
        if noisy.num_samples == clean.num_samples and clean.speech_end_sample > 0:
            noisy = load(row, (clean.speech_start_sample, clean.speech_end_sample))
        utterances.append(noisy)
    return Corpus(utterances, source=manifest_path)


def _source_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """What a noisy copy shares with the clean utterance it was made from."""
    return (row["text"], row["expected_intent"], row["voice"], row["words_per_minute"])


def _stub(row: dict[str, Any]) -> Utterance:
    return Utterance(
        id=row["id"], text=row["text"], expected_intent=row["expected_intent"],
        reply_check=row["reply_check"], kind=row["kind"], snr_db=row["snr_db"],
        path=Path(row["path"]), sample_rate_hz=SAMPLE_RATE_HZ, pcm=b"",
        speech_start_sample=0, speech_end_sample=0, voice=row["voice"],
        words_per_minute=row["words_per_minute"],
    )  # fmt: skip


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    """Parse and validate every row; all problems are reported together in one CorpusError."""
    if not path.is_file():
        raise CorpusError(
            f"corpus manifest {path} not found; pass the path of a manifest.csv, or rebuild the "
            f"bundled corpus with `python -m audio_corpus.build`"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"corpus manifest {path} cannot be read as UTF-8 text: {error}") from None
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    missing = [column for column in MANIFEST_COLUMNS if column not in header]
    if missing:
        raise CorpusError(
            f"corpus manifest {path}, line 1: missing column(s) {', '.join(missing)}; "
            f"the header must name {','.join(MANIFEST_COLUMNS)}"
        )
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    first_line: dict[str, int] = {}
    # The bundled corpus speaks the SmartJARVIS NLU's language; one's own may have other intents.
    standard_only = path.resolve() == DEFAULT_MANIFEST.resolve()
    for raw in reader:
        line = reader.line_num
        where = f"line {line}"
        if None in raw:
            problems.append(f"{where}: more cells than columns in the header")
            continue
        row: dict[str, Any] = {key: (value or "").strip() for key, value in raw.items() if key}
        if not any(row.values()):
            continue  # blank line
        row_problems: list[str] = []
        uid = row["id"]
        if not uid:
            row_problems.append("empty id")
        elif not _ID_PATTERN.match(uid):
            row_problems.append(f"id {uid!r} may only hold letters, digits and _ . + -")
        elif uid in first_line:
            row_problems.append(f"duplicate id {uid!r} (first on line {first_line[uid]})")
        else:
            first_line[uid] = line
        intent_problem = check_intent_name(row["expected_intent"], standard_only=standard_only)
        if intent_problem:
            row_problems.append(intent_problem)
        elif not standard_only:
            _warn_near_standard_intent(path, line, row["expected_intent"])
        if row["kind"] not in KINDS:
            row_problems.append(f"unknown kind {row['kind']!r}; use one of {', '.join(KINDS)}")
        elif row["kind"] == "unknown" and row["expected_intent"] != "UNKNOWN":
            row_problems.append("kind unknown (out of grammar) needs expected_intent UNKNOWN")
        if not row["path"]:
            row_problems.append("empty path")
        try:
            row["snr_db"] = float(row["snr_db"]) if row["snr_db"] else None
            if row["snr_db"] is not None and not math.isfinite(row["snr_db"]):
                raise ValueError
        except ValueError:
            row_problems.append(f"snr_db {row['snr_db']!r} is not a number of dB")
        if row["kind"] == "noisy" and row["snr_db"] is None:
            row_problems.append("kind noisy needs snr_db")
        try:
            row["words_per_minute"] = int(row["words_per_minute"]) if row["words_per_minute"] else None
            if row["words_per_minute"] is not None and not 20 <= row["words_per_minute"] <= 600:
                row_problems.append(f"words_per_minute {row['words_per_minute']} is outside 20-600")
        except ValueError:
            row_problems.append(f"words_per_minute {row['words_per_minute']!r} is not an integer")
        try:
            parse_reply_check(row["reply_check"])
        except ValueError as error:
            row_problems.append(str(error))
        problems.extend(f"{where}: {problem}" for problem in row_problems)
        rows.append(row)
    if not problems and not rows:
        problems.append("no utterances (the manifest has a header but no rows)")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise CorpusError(f"corpus manifest {path} is invalid:\n  " + "\n  ".join(shown))
    return rows


def load_utterance_file(
    path: str | Path,
    *,
    expected_intent: str,
    utterance_id: str | None = None,
    text: str = "",
    reply_check: str = "",
    kind: str = "clean",
    snr_db: float | None = None,
    voice: str = "",
    words_per_minute: int | None = None,
    speech_samples: tuple[int, int] | None = None,
) -> Utterance:
    """Load one WAV (or other libsndfile-readable) file as an :class:`Utterance`.

    ``utterance_id`` defaults to the file name without its extension. The file is checked and
    converted as described in the module docstring; CorpusError names the file and the fix.
    ``speech_samples`` is ``(start, end)`` of the speech in samples at 16 kHz when known;
    by default it is found with :func:`find_speech`. ``expected_intent`` is any intent name
    (see :func:`check_intent_name`), or ``""`` when the caller judges the reply itself.
    """
    path = Path(path)
    intent_problem = check_intent_name(expected_intent) if expected_intent else None
    if intent_problem:
        raise CorpusError(f"{path}: {intent_problem}")
    if kind not in KINDS:
        raise CorpusError(f"{path}: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    try:
        parse_reply_check(reply_check)
    except ValueError as error:
        raise CorpusError(f"{path}: {error}") from None
    samples = _read_pcm16(path)
    if speech_samples is None:
        start, end = find_speech(samples, SAMPLE_RATE_HZ)
    else:
        start, end = speech_samples
        if not 0 <= start <= end <= samples.size:
            raise CorpusError(f"{path}: speech bounds {speech_samples} outside 0-{samples.size} samples")
    return Utterance(
        id=utterance_id if utterance_id is not None else path.stem,
        text=text,
        expected_intent=expected_intent,
        reply_check=reply_check,
        kind=kind,
        snr_db=snr_db,
        path=path,
        sample_rate_hz=SAMPLE_RATE_HZ,
        pcm=samples.astype("<i2", copy=False).tobytes(),
        speech_start_sample=start,
        speech_end_sample=end,
        voice=voice,
        words_per_minute=words_per_minute,
    )


def check_intent_name(intent: str, *, standard_only: bool = False) -> str | None:
    """What is wrong with ``intent`` as an expected intent, or None when it is fine.

    ``standard_only``: only the SmartJARVIS intents (``INTENTS``) are allowed (the bundled
    corpus). Otherwise any name of upper-case letters, digits and ``_`` is, since another
    gateway's NLU has its own commands.
    """
    if standard_only:
        if intent in INTENTS:
            return None
        return f"unknown expected_intent {intent!r}; use one of {', '.join(INTENTS)}"
    if _INTENT_PATTERN.match(intent):
        return None
    if not intent:
        return "empty expected_intent; name the intent the gateway should answer (e.g. GREETING)"
    suggestion = re.sub(r"[^A-Z0-9_]+", "_", intent.upper()).strip("_")
    hint = f" (e.g. {suggestion})" if suggestion and _INTENT_PATTERN.match(suggestion) else ""
    return (
        f"expected_intent {intent!r} is not an intent name: use upper-case letters, digits and _ "
        f"only{hint}"
    )


def near_standard_intent(intent: str) -> str | None:
    """A note when ``intent`` is one typo away from a standard intent (``GREETNG``), else None."""
    if intent in INTENTS:
        return None
    close = difflib.get_close_matches(intent, INTENTS, n=1, cutoff=0.85)
    if not close:
        return None
    return (
        f"expected_intent {intent!r} is not a SmartJARVIS intent; did you mean {close[0]}? "
        f"(other intents are fine for another gateway's NLU)"
    )


def _warn_near_standard_intent(path: Path, line: int, intent: str) -> None:
    """A custom intent one typo away from a standard one is more likely a typo than a new intent."""
    note = near_standard_intent(intent)
    if note:
        warnings.warn(f"corpus manifest {path}, line {line}: {note}", CorpusWarning, stacklevel=4)


def write_manifest(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write a manifest that :func:`load_corpus` reads: ``MANIFEST_COLUMNS``, ``\\n`` line ends.

    ``None`` cells are written empty. The bytes depend only on ``rows`` (reproducible builds).
    """
    with Path(path).open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for row in rows:
            writer.writerow(["" if row[column] is None else row[column] for column in MANIFEST_COLUMNS])


def pcm16_wav_bytes(pcm: bytes) -> bytes:
    """A 16 kHz mono PCM16 WAV holding ``pcm``: a plain 44-byte header, no timestamps."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(SAMPLE_WIDTH_BYTES)
        writer.setframerate(SAMPLE_RATE_HZ)
        writer.writeframes(pcm)
    return buffer.getvalue()


def _read_pcm16(path: Path) -> np.ndarray:
    """The file's audio as 16 kHz mono int16 samples, converted if needed (with a warning)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(
            f"corpus file {path} not found; fix the manifest's path, or rebuild the bundled corpus "
            f"with `python -m audio_corpus.build`"
        ) from None
    except OSError as error:
        raise CorpusError(f"corpus file {path} cannot be read: {error}") from None
    if not data:
        raise CorpusError(f"corpus file {path} is empty (0 bytes); rebuild or re-export it as a WAV")
    if data[:4] == b"RIFF":
        _check_riff_wav(path, data)
    try:
        info = soundfile.info(str(path))
        if info.frames == 0:
            raise CorpusError(
                f"corpus file {path} holds zero-length audio (no samples); re-record or rebuild it"
            )
        dtype = "int16" if info.subtype == "PCM_16" else "float64"
        audio, _ = soundfile.read(str(path), dtype=dtype, always_2d=True)
    except CorpusError:
        raise
    except (RuntimeError, TypeError, ValueError) as error:
        start = data[:16].decode("latin-1")
        raise CorpusError(
            f"corpus file {path} is not audio libsndfile can read ({error}; it starts with "
            f"{start!r}); replace it with a 16 kHz mono PCM16 WAV"
        ) from None
    if len(audio) == 0:
        raise CorpusError(f"corpus file {path} holds zero-length audio (no samples); re-record or rebuild it")
    reasons = []
    if info.samplerate != SAMPLE_RATE_HZ:
        reasons.append(f"{info.samplerate} Hz resampled to {SAMPLE_RATE_HZ} Hz")
    if info.channels != 1:
        reasons.append(f"{info.channels} channels mixed down to mono")
    if info.subtype != "PCM_16":
        reasons.append(f"{info.subtype} samples converted to PCM16")
    if not reasons:
        return audio[:, 0]
    signal = audio.astype(np.float64)
    if dtype == "int16":
        signal /= 32768.0
    signal = signal.mean(axis=1)
    if info.samplerate != SAMPLE_RATE_HZ:
        from scipy.signal import resample_poly  # scipy is slow to import; only conversions need it

        divisor = math.gcd(SAMPLE_RATE_HZ, info.samplerate)
        signal = resample_poly(signal, SAMPLE_RATE_HZ // divisor, info.samplerate // divisor)
    scaled = np.round(signal * 32767.0)
    if np.any(np.abs(scaled) > 32767):
        reasons.append("samples beyond full scale clipped")
    warnings.warn(
        CorpusWarning(f"corpus file {path}: {'; '.join(reasons)} at load time; {_CONVERT_HINT}", tuple(reasons)),
        stacklevel=3,
    )
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def _check_riff_wav(path: Path, data: bytes) -> None:
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


# --------------------------------------------------------------------------------------------
# Speech detection
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Reply checks
# --------------------------------------------------------------------------------------------


def parse_reply_check(spec: str) -> tuple[str, str]:
    """``(operation, argument)`` of a reply_check, ``("", "")`` for none; ValueError if malformed."""
    spec = spec.strip()
    if not spec:
        return "", ""
    operation, _, argument = spec.partition(":")
    operation = operation.strip().lower()
    argument = argument.strip()
    if operation not in _REPLY_CHECK_OPS:
        raise ValueError(
            f"reply_check {spec!r}: unknown check {operation!r}; use contains:WORDS, any:A|B, "
            f"regex:PATTERN or nonempty"
        )
    if operation == "nonempty":
        if argument:
            raise ValueError(f"reply_check {spec!r}: nonempty takes no argument")
        return operation, ""
    if not argument or (operation == "any" and not all(_normalise(a) for a in argument.split("|"))):
        raise ValueError(f"reply_check {spec!r}: {operation} needs text after the colon")
    if operation == "regex":
        try:
            re.compile(argument)
        except re.error as error:
            raise ValueError(f"reply_check {spec!r}: bad regular expression ({error})") from None
    return operation, argument


def _normalise(text: str) -> str:
    """Lower case, punctuation dropped (apostrophes too: "what's" -> "whats"), single spaces."""
    text = re.sub(r"['\u2019]", "", text.lower())
    return " ".join(re.sub(r"[^\w]+", " ", text).split())


def check_reply(utterance: Utterance, intent: str | None, reply_text: str | None) -> str | None:
    """A description of what is wrong with a reply to ``utterance``, or None when it is right.

    Checks the recognised ``intent`` (None: none arrived) against the expected one, then the
    ``reply_text`` (the gateway's reply or transcript text, None or "" when it sent none)
    against the utterance's reply_check.
    """
    if intent is None or intent == "":
        return f"no intent received (expected {utterance.expected_intent})"
    if intent != utterance.expected_intent:
        return f"intent {intent}, expected {utterance.expected_intent}"
    operation, argument = parse_reply_check(utterance.reply_check)
    if not operation:
        return None
    reply = _normalise(reply_text or "")
    if not reply:
        return f"no reply text to check (expected {utterance.reply_check})"
    if operation == "nonempty":
        return None
    if operation == "contains":
        if f" {_normalise(argument)} " in f" {reply} ":
            return None
        return f"reply {reply_text!r} does not contain {argument!r}"
    if operation == "any":
        alternatives = [_normalise(a) for a in argument.split("|")]
        if any(f" {a} " in f" {reply} " for a in alternatives):
            return None
        return f"reply {reply_text!r} contains none of {argument!r}"
    if re.search(argument, reply_text or "", flags=re.IGNORECASE):
        return None
    return f"reply {reply_text!r} does not match /{argument}/"
