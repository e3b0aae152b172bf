"""``python -m audio_corpus.build`` (``voice-corpus-build``): build a corpus, the bundled one or one's own.

::

    python -m audio_corpus.build            # regenerate wav/*.wav, manifest.csv, build-info.json
    python -m audio_corpus.build --check    # the committed files match the manifest (no rebuild)
    python -m audio_corpus.build --verify   # rebuild into a temporary folder, compare bytes
    python -m audio_corpus.build --out DIR --only ID[,ID]   # build some utterances elsewhere
    python -m audio_corpus.build --from-text phrases.csv --voices en-us,en+m3 --rates 130,160 --out DIR
    python -m audio_corpus.build --from-dir DIR --labels labels.csv [--out OUTDIR]

The first four run the bundled recipe (:mod:`audio_corpus.recipe`); the last two make a corpus
of one's own (:mod:`audio_corpus.phrases`, :mod:`audio_corpus.recordings`): a folder with a
``manifest.csv`` for the harness's ``--corpus-manifest``. This module is the command line only:
nothing imports it, so ``python -m`` runs it once.

Exit status: 0 built or checked, 1 the check found problems, 2 bad input (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from voiceharness.errors import CorpusError, HarnessError

from .model import CorpusWarning
from .phrases import build_from_text, parse_rates, parse_voices
from .recipe import build, check, verify
from .recordings import build_from_dir
from .specs import PACKAGE_DIR, WAV_DIR, Spec


def _summary(specs: list[Spec]) -> str:
    by_intent: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    for s in specs:
        by_intent[s.intent] = by_intent.get(s.intent, 0) + 1
        by_kind[s.kind] = by_kind.get(s.kind, 0) + 1
    return f"{len(specs)} utterances; by intent {by_intent}; by kind {by_kind}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m audio_corpus.build",
        description="Build a corpus: the bundled one from espeak-ng, one's own phrases, one's own recordings.",
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
    if args.out is None:
        raise CorpusError("--from-text needs --out DIR: the folder for the WAVs and manifest.csv")
    voices = parse_voices(args.voices or "en-us")
    rates = parse_rates(args.rates or "160")
    specs = build_from_text(args.from_text, args.out, voices, rates, quiet=args.quiet)
    print(f"built {_summary(specs)} in {args.out}; use it with --corpus-manifest {args.out / 'manifest.csv'}")
    return 0


def _main_from_dir(args: argparse.Namespace) -> int:
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
