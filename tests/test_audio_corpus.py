"""audio_corpus, the package: its error family, and its API importing without the build's command line."""

from __future__ import annotations

import subprocess
import sys

from voiceharness.errors import CorpusError, UsageError


def test_corpus_error_is_a_usage_error():
    assert issubclass(CorpusError, UsageError)


def test_the_package_gives_the_builders_without_loading_the_command_line():
    """``python -m audio_corpus.build`` would run the module twice if importing the package loaded it."""
    script = (
        "import sys, audio_corpus, audio_corpus.phrases, audio_corpus.recordings\n"
        "assert audio_corpus.build_from_text is audio_corpus.phrases.build_from_text\n"
        "assert audio_corpus.build_from_dir is audio_corpus.recordings.build_from_dir\n"
        "print('audio_corpus.build' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
