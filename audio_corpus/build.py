"""Build a corpus: the bundled one from espeak-ng, one's own phrases, one's own recordings.

::

    python -m audio_corpus.build            # regenerate wav/*.wav, manifest.csv, build-info.json
    python -m audio_corpus.build --check    # the committed files match the manifest (no rebuild)
    python -m audio_corpus.build --verify   # rebuild into a temporary folder, compare bytes
    python -m audio_corpus.build --out DIR --only ID[,ID]   # build some utterances elsewhere
    python -m audio_corpus.build --from-text phrases.csv --voices en-us,en+m3 --rates 130,160 --out DIR
    python -m audio_corpus.build --from-dir DIR --labels labels.csv [--out OUTDIR]

The last two make a corpus of one's own (:mod:`audio_corpus.phrases`,
:mod:`audio_corpus.recordings`): a folder with a ``manifest.csv`` for the harness's
``--corpus-manifest``.

Each clean utterance is spoken by espeak-ng as :mod:`audio_corpus.synthesis` describes
(resampled to 16 kHz, trimmed, peak-normalised to -3 dBFS, framed with 300 ms of leading and
200 ms of trailing digital silence, so that the end of speech is a definite point in time).
Noisy copies add white or pink noise from a numpy RNG seeded by the utterance id, at a given
SNR over the speech part. WAVs are written with the standard library's ``wave`` module (a
plain 44-byte header, no timestamps), so building twice gives byte-identical files. The same
bytes on another machine need the same espeak-ng version (recorded in ``build-info.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voiceharness.errors import CorpusError, HarnessError
from voiceharness.guide import SAMPLE_RATE_HZ

from .loader import DEFAULT_MANIFEST, PACKAGE_DIR, CorpusWarning, load_corpus, write_manifest
from .synthesis import (
    LEADING_SILENCE_MS,
    TRAILING_SILENCE_MS,
    espeak_binary,
    espeak_version,
    normalise_peak,
    synthesise,
    to_wav_bytes,
)

WAV_DIR = "wav"
BUILD_INFO = "build-info.json"

VOICES = ("en-us", "en", "en-us+f3", "en+m3")  # US male, British male, US female, British male 3
RATE_NORMAL_WPM = 160
RATE_SLOW_WPM = 130
RATE_FAST_WPM = 200
SNRS_DB = (20, 10, 5)


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


def _echo_check(text: str) -> str:
    return "contains:" + text.split(" ", 1)[1] if text.startswith("echo ") else ""


def corpus_specs() -> list[Spec]:
    """The whole corpus, in manifest order."""
    specs: list[Spec] = []
    # The guide's four practical examples: every voice at a slow and a normal rate, and the
    # US voice fast too (the "fast commands" of the performance scenario).
    guide_commands = [
        ("hello jarvis", "GREETING"),
        ("echo hello world", "ECHO"),
        ("what time is it", "TIME_NOW"),
        ("how is the weather", "WEATHER_SIMPLE"),
    ]
    for text, intent in guide_commands:
        for voice in VOICES:
            for rate in (RATE_NORMAL_WPM, RATE_SLOW_WPM):
                specs.append(Spec(text, intent, voice, rate, reply_check=_echo_check(text)))
        specs.append(Spec(text, intent, "en-us", RATE_FAST_WPM, reply_check=_echo_check(text)))
    # Other phrasings of the same command language, one voice and rate each, rotating.
    variants = [
        ("hi jarvis", "GREETING"),
        ("good morning jarvis", "GREETING"),
        ("hello", "GREETING"),
        ("hey jarvis", "GREETING"),
        ("echo good morning", "ECHO"),
        ("echo open the door", "ECHO"),
        ("echo testing one two three", "ECHO"),
        ("what is the time", "TIME_NOW"),
        ("tell me the time", "TIME_NOW"),
        ("jarvis what time is it", "TIME_NOW"),
        ("what's the weather like", "WEATHER_SIMPLE"),
        ("what is the weather today", "WEATHER_SIMPLE"),
        ("jarvis how is the weather", "WEATHER_SIMPLE"),
    ]
    rates = (RATE_NORMAL_WPM, RATE_SLOW_WPM, RATE_FAST_WPM)
    for index, (text, intent) in enumerate(variants):
        voice, rate = VOICES[index % len(VOICES)], rates[index % len(rates)]
        specs.append(Spec(text, intent, voice, rate, reply_check=_echo_check(text)))
    # Out of grammar: the gateway must answer UNKNOWN.
    unknown = ["play some music", "turn off the lights", "order a pizza", "set an alarm for seven"]
    for index, text in enumerate(unknown):
        voice = VOICES[index % len(VOICES)]
        specs.append(Spec(text, "UNKNOWN", voice, RATE_NORMAL_WPM, kind="unknown"))
    # Noisy copies of the guide's commands (US voice, normal rate); the noise colour
    # alternates so that both colours occur at every SNR.
    for command_index, (text, intent) in enumerate(guide_commands):
        for snr_index, snr_db in enumerate(SNRS_DB):
            noise = ("white", "pink")[(command_index + snr_index) % 2]
            specs.append(
                Spec(text, intent, "en-us", RATE_NORMAL_WPM, "noisy", _echo_check(text), snr_db, noise)
            )
    return specs


# --------------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------------


def noise(kind: str, length: int, seed: int) -> np.ndarray:
    """Unit-RMS white or pink (1/f power) noise of ``length`` samples from a seeded RNG."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(length)
    if kind == "white":
        shaped = white
    elif kind == "pink":
        spectrum = np.fft.rfft(white)
        frequencies = np.arange(spectrum.size, dtype=np.float64)
        frequencies[0] = 1.0  # keep the DC bin finite; its amplitude is removed below
        shaped = np.fft.irfft(spectrum / np.sqrt(frequencies), n=length)
        shaped -= shaped.mean()
    else:
        raise ValueError(f"unknown noise {kind!r}; use white or pink")
    return shaped / np.sqrt(np.mean(shaped**2))


def add_noise(clean: np.ndarray, spec: Spec) -> np.ndarray:
    """``clean`` plus noise at ``spec.snr_db`` over its speech part, peak-normalised again."""
    assert spec.snr_db is not None
    lead = SAMPLE_RATE_HZ * LEADING_SILENCE_MS // 1000
    trail = SAMPLE_RATE_HZ * TRAILING_SILENCE_MS // 1000
    speech = clean[lead : clean.size - trail]  # the power of speech, not of the framing silence
    speech_power = float(np.mean(speech**2))
    noise_power = speech_power / 10 ** (spec.snr_db / 10)
    # crc32 of the id: a seed that is stable across runs and Python versions (hash() is not).
    seed = zlib.crc32(spec.id.encode("utf-8"))
    mixed = clean + noise(spec.noise, clean.size, seed) * math.sqrt(noise_power)
    return normalise_peak(mixed)  # scales speech and noise alike: the SNR is kept


# --------------------------------------------------------------------------------------------
# Building and checking
# --------------------------------------------------------------------------------------------


def build(
    out_dir: Path = PACKAGE_DIR, only: Iterable[str] | None = None, *, quiet: bool = False
) -> list[Spec]:
    """Write the WAVs and a manifest of ``only`` (ids; all when None) into ``out_dir``."""
    espeak_binary()  # fail before anything is written
    specs = corpus_specs()
    if only is not None:
        wanted = set(only)
        unknown = sorted(wanted - {s.id for s in specs})
        if unknown:
            raise CorpusError(
                f"no utterance {', '.join(unknown)} in the corpus; ids: {', '.join(s.id for s in specs)}"
            )
        specs = [s for s in specs if s.id in wanted]
        if out_dir.resolve() == PACKAGE_DIR:
            raise CorpusError("--only would leave the bundled manifest incomplete; pass --out DIR too")
    wav_dir = out_dir / WAV_DIR
    wav_dir.mkdir(parents=True, exist_ok=True)
    clean_cache: dict[str, np.ndarray] = {}
    for spec in specs:
        source = spec.source
        if source.id not in clean_cache:
            clean_cache[source.id] = synthesise(source.text, source.voice, source.words_per_minute)
        signal = clean_cache[source.id] if spec.kind != "noisy" else add_noise(clean_cache[source.id], spec)
        (out_dir / spec.path).write_bytes(to_wav_bytes(signal))
        if not quiet:
            print(f"  {spec.path}")
    if only is None:
        keep = {Path(s.path).name for s in specs}
        for stale in wav_dir.glob("*.wav"):
            if stale.name not in keep:
                stale.unlink()
                if not quiet:
                    print(f"  removed stale {stale.name}")
    write_manifest(out_dir / DEFAULT_MANIFEST.name, manifest_rows(specs))
    info = {"espeak_ng": espeak_version(), "numpy": np.__version__, "utterances": len(specs)}
    (out_dir / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return specs


def manifest_rows(specs: Iterable[Spec]) -> list[dict[str, object]]:
    """The manifest rows of ``specs`` (see :func:`audio_corpus.loader.write_manifest`)."""
    return [
        {"id": s.id, "text": s.text, "expected_intent": s.intent, "reply_check": s.reply_check,
         "path": s.path, "voice": s.voice, "words_per_minute": s.words_per_minute, "snr_db": s.snr_db,
         "kind": s.kind}
        for s in specs
    ]  # fmt: skip


def check(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Problems with the committed corpus, without rebuilding ([] when all is well).

    The manifest loads (every file exists, is audio, is complete), no file needed converting
    (16 kHz mono PCM16 already), the manifest lists exactly the utterances this build makes,
    and no WAV lies in wav/ unlisted.
    """
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CorpusWarning)
        try:
            corpus = load_corpus(package_dir / DEFAULT_MANIFEST.name)
        except CorpusError as error:
            return [str(error)]
    problems += [str(w.message) for w in caught if issubclass(w.category, CorpusWarning)]
    expected = [s.id for s in corpus_specs()]
    actual = [u.id for u in corpus]
    if actual != expected:
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        problems.append(
            f"manifest differs from the build's list (missing {missing or 'none'}, extra {extra or 'none'}, "
            f"or another order); run `python -m audio_corpus.build`"
        )
    listed = {u.path.resolve() for u in corpus}
    for wav in sorted((package_dir / WAV_DIR).glob("*.wav")):
        if wav.resolve() not in listed:
            problems.append(f"{wav} is not in the manifest; delete it or rebuild")
    return problems


def verify(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Rebuild into a temporary folder; the names of committed files whose bytes differ."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="audio_corpus_verify_") as folder:
        specs = build(Path(folder), quiet=True)
        for spec in specs:
            committed = package_dir / spec.path
            if not committed.is_file() or committed.read_bytes() != (Path(folder) / spec.path).read_bytes():
                problems.append(f"{committed} differs from a fresh build")
        if (package_dir / "manifest.csv").read_bytes() != (Path(folder) / "manifest.csv").read_bytes():
            problems.append(f"{package_dir / 'manifest.csv'} differs from a fresh build")
    if problems:
        info_path = package_dir / BUILD_INFO
        built_with = json.loads(info_path.read_text())["espeak_ng"] if info_path.is_file() else "unknown"
        problems.append(f"committed files were built with {built_with}; this machine has {espeak_version()}")
    return problems


def _summary(specs: list[Spec]) -> str:
    by_intent: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    for s in specs:
        by_intent[s.intent] = by_intent.get(s.intent, 0) + 1
        by_kind[s.kind] = by_kind.get(s.kind, 0) + 1
    return f"{len(specs)} utterances; by intent {by_intent}; by kind {by_kind}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audio_corpus.build", description=__doc__.split("\n")[0],
        epilog="Your own phrases: --from-text CSV (text,expected_intent[,reply_check]) --voices --rates "
        "--out DIR. Your own recordings: --from-dir DIR --labels CSV "
        "(file,expected_intent[,text][,reply_check]) [--out OUTDIR].",
    )  # fmt: skip
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="check the committed WAVs against the manifest")
    mode.add_argument("--verify", action="store_true", help="rebuild in a temporary folder and compare bytes")
    mode.add_argument("--from-text", type=Path, metavar="CSV",
                      help="build a corpus of your own phrases (text,expected_intent[,reply_check])")
    mode.add_argument("--from-dir", type=Path, metavar="DIR",
                      help="build a corpus of your own recordings in DIR (needs --labels)")
    parser.add_argument("--out", type=Path, help="output folder (default: the package; DIR with --from-dir)")
    parser.add_argument("--only", help="comma-separated utterance ids to build (needs --out)")
    parser.add_argument("--voices", help="--from-text: comma-separated espeak-ng voices (default en-us)")
    parser.add_argument("--rates", help="--from-text: comma-separated words per minute (default 160)")
    parser.add_argument("--labels", type=Path, metavar="CSV",
                        help="--from-dir: file,expected_intent[,text][,reply_check] per line")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    misplaced = [flag for flag, value, allowed in (
        ("--voices", args.voices, args.from_text), ("--rates", args.rates, args.from_text),
        ("--labels", args.labels, args.from_dir), ("--only", args.only, not (args.from_text or args.from_dir)),
    ) if value is not None and not allowed]  # fmt: skip
    if misplaced:
        parser.error(f"{', '.join(misplaced)} does not go with the chosen mode; see --help")
    with warnings.catch_warnings():  # restored on return: main() may be called from a test
        warnings.showwarning = _show_warning_as_line
        warnings.simplefilter("always", CorpusWarning)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.from_text:
            return _main_from_text(args)
        if args.from_dir:
            return _main_from_dir(args)
        out = args.out or PACKAGE_DIR
        if args.check or args.verify:
            problems = check(out) if args.check else verify(out)
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            if not problems:
                print(f"{'check' if args.check else 'verify'}: corpus in {out} is OK")
            return 1 if problems else 0
        only = [i.strip() for i in args.only.split(",") if i.strip()] if args.only else None
        specs = build(out, only, quiet=args.quiet)
        total = sum((out / s.path).stat().st_size for s in specs)
        print(f"built {_summary(specs)}; {total / 1e6:.2f} MB in {out / WAV_DIR}")
        return 0
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _main_from_text(args: argparse.Namespace) -> int:
    from .phrases import build_from_text, parse_rates, parse_voices

    if args.out is None:
        raise CorpusError("--from-text needs --out DIR: the folder for the WAVs and manifest.csv")
    voices = parse_voices(args.voices or "en-us")
    rates = parse_rates(args.rates or "160")
    specs = build_from_text(args.from_text, args.out, voices, rates, quiet=args.quiet)
    print(f"built {_summary(specs)} in {args.out}; use it with --corpus-manifest {args.out / 'manifest.csv'}")
    return 0


def _main_from_dir(args: argparse.Namespace) -> int:
    from .recordings import build_from_dir

    if args.labels is None:
        raise CorpusError("--from-dir needs --labels CSV: file,expected_intent[,text][,reply_check] per line")
    out = args.out or args.from_dir
    corpus = build_from_dir(args.from_dir, args.labels, out, quiet=args.quiet)
    print(f"listed {len(corpus)} recordings {corpus.counts('expected_intent')}; use them with "
          f"--corpus-manifest {out / 'manifest.csv'}")  # fmt: skip
    return 0


def _show_warning_as_line(message, *_where, **_more) -> None:
    """A CorpusWarning as one line (``warning: ...``), not Python's two-line format."""
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
