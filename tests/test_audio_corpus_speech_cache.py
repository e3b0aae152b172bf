"""Tests of audio_corpus.speech_cache: text said once by any process is reused by all.

Synthesis is the real espeak-ng; a logging espeak-ng first on PATH (it execs the real one)
counts how often speech was synthesised, which tells a cache hit (0) from a miss (1).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import corpus_helpers
import numpy as np
import pytest
import soundfile
from corpus_helpers import logging_espeak, synthesis_calls

from audio_corpus import CorpusWarning, resolve, resolve_utterance, speech_cache_root
from audio_corpus import speech_cache as cache
from audio_corpus.synthesis import synthesise, to_wav_bytes
from voiceharness.errors import CorpusError

TEXT = "turn on the kitchen lights"

# A separate process that, once imported, says it is ready and says a text when `start`
# exists (so that several start together); it prints what it got: the audio's hash, the cache
# file, the utterance id, how many warnings.
SAY = textwrap.dedent("""
    import hashlib, os, pathlib, sys, time, warnings
    from audio_corpus import resolve_utterance
    start = pathlib.Path(sys.argv[1])
    (start.parent / f"ready-{os.getpid()}").touch()
    while not start.exists():
        time.sleep(0.005)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        utterance = resolve_utterance(sys.argv[2])
    print(hashlib.sha256(utterance.pcm).hexdigest(), utterance.path, utterance.id, len(caught))
""")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    yield from corpus_helpers.fresh_cache(tmp_path, monkeypatch)


@pytest.fixture
def counted(tmp_path, monkeypatch) -> Path:
    """The log of a logging espeak-ng put first on PATH (for this process and its children)."""
    bin_dir, log = logging_espeak(tmp_path / "espeak")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def start_sayers(count: int, text: str, start: Path) -> list[subprocess.Popen]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", SAY, str(start), text], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]


def results(processes: list[subprocess.Popen]) -> list[list[str]]:
    lines = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        lines.append(out.split())
    return lines


def test_the_cache_folder_is_chosen_by_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(cache.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert speech_cache_root() == tmp_path / "home" / ".cache" / "voice-harness"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert speech_cache_root() == tmp_path / "xdg" / "voice-harness"
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "mine"))
    assert speech_cache_root() == tmp_path / "mine"


def test_the_first_process_synthesises_and_the_next_one_reads_the_file(tmp_path, fresh_cache, counted):
    start = tmp_path / "go"
    start.touch()
    (first,) = results(start_sayers(1, TEXT, start))
    assert synthesis_calls(counted) == 1
    (second,) = results(start_sayers(1, TEXT, start))
    assert synthesis_calls(counted) == 1  # a hit: espeak-ng did not speak again
    assert first == second
    digest, path, _, warnings_given = first
    assert Path(path).parent == fresh_cache / "speech" and warnings_given == "0"
    expected = to_wav_bytes(synthesise(TEXT, "en-us", 160))
    assert Path(path).read_bytes() == expected
    assert digest == hashlib.sha256(expected[44:]).hexdigest()


def test_processes_saying_a_new_text_at_once_all_get_the_one_whole_file(tmp_path, fresh_cache, counted):
    start = tmp_path / "go"
    sayers = start_sayers(3, TEXT, start)
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    start.touch()  # all three are waiting on it
    said = results(sayers)
    assert len({tuple(line) for line in said}) == 1, said  # same audio, file, id; no warning
    assert said[0][3] == "0"
    assert 1 <= synthesis_calls(counted) <= 3  # each one that found no file made it
    files = sorted(p.name for p in (fresh_cache / "speech").iterdir())
    assert files == [Path(said[0][1]).name]  # one file, no temporary left behind
    (after,) = results(start_sayers(1, TEXT, start))
    assert after == said[0]
    assert synthesis_calls(counted) <= 3


def test_the_key_holds_text_voice_rate_and_the_espeak_version(tmp_path, fresh_cache, monkeypatch):
    paths = {
        cache.speech_path(TEXT, "en-us", 160),
        cache.speech_path(TEXT + ".", "en-us", 160),
        cache.speech_path(TEXT, "en-us+f3", 160),
        cache.speech_path(TEXT, "en-us", 161),
    }
    assert len(paths) == 4
    assert cache.speech_path(TEXT, "en-us", 160) == cache.speech_path(TEXT, "en-us", 160)
    assert cache.speech_path(TEXT, "en-us", 160).name.startswith("turn_on_the_kitchen_lights.en-us.160wpm.")
    bin_dir, _ = logging_espeak(tmp_path / "newer", version="eSpeak NG text-to-speech: 9.99-test")
    before = cache.speech_path(TEXT, "en-us", 160)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert cache.speech_path(TEXT, "en-us", 160) != before  # another espeak-ng: another file


@pytest.mark.parametrize("damage", ["garbage", "truncated", "44k_stereo", "silence", "empty"])
def test_a_corrupt_cache_file_is_synthesised_again_with_a_warning(damage, fresh_cache, counted):
    good = resolve_utterance(TEXT)
    path = good.path
    whole = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"this is not a wav file at all" * 10)
    elif damage == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
    elif damage == "44k_stereo":
        soundfile.write(str(path), np.zeros((44_100, 2)) + 0.1, 44_100, subtype="PCM_16")
    elif damage == "silence":
        soundfile.write(str(path), np.zeros(16_000), 16_000, subtype="PCM_16")
    else:
        path.write_bytes(b"")
    cache_calls = synthesis_calls(counted)
    resolve._memo.clear()  # a new process: nothing remembered
    with pytest.warns(CorpusWarning, match=rf"speech cache file {path} is corrupt .*synthesising '{TEXT}' again"):
        again = resolve_utterance(TEXT)
    assert synthesis_calls(counted) == cache_calls + 1
    assert again.pcm == good.pcm and again.path == path
    assert path.read_bytes() == whole


def test_a_cache_folder_that_cannot_be_written_falls_back_with_a_warning(tmp_path, monkeypatch, fresh_cache):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker / "cache"))  # under a file: no folder can be made
    with pytest.warns(CorpusWarning, match=r"cannot be written .*for this process only. Set \$VOICE_HARNESS_CACHE"):
        said = resolve_utterance(TEXT)
    assert said.path.is_file() and not str(said.path).startswith(str(blocker))
    assert said.pcm == to_wav_bytes(synthesise(TEXT, "en-us", 160))[44:]


def test_a_missing_espeak_says_how_to_install_it(tmp_path, monkeypatch, fresh_cache):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CorpusError, match=r"espeak-ng not found on PATH.*apt-get install espeak-ng"):
        resolve_utterance(TEXT)


def test_a_temporary_file_left_by_a_dead_writer_is_removed_later(fresh_cache):
    folder = fresh_cache / "speech"
    folder.mkdir(parents=True)
    old = folder / ".dead.wav.abc123.tmp"
    old.write_bytes(b"half a file")
    os.utime(old, (time.time() - 2 * 3600,) * 2)
    recent = folder / ".busy.wav.def456.tmp"
    recent.write_bytes(b"being written now")
    resolve_utterance(TEXT)
    assert not old.exists() and recent.exists()
