"""Tests of audio_corpus.resolve: what a scenario names becomes an utterance, by documented rules.

Text is spoken by the real espeak-ng into a speech cache of the test's own (``fresh_cache``).
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import corpus_helpers
import numpy as np
import pytest
import soundfile
from corpus_helpers import logging_espeak, synthesis_calls

import audio_corpus
from audio_corpus import (
    MANIFEST_COLUMNS,
    CorpusWarning,
    Utterance,
    load_corpus,
    resolve_utterance,
    text_utterance,
    text_utterance_id,
)
from audio_corpus.synthesis import synthesise, to_wav_bytes
from voiceharness.errors import CorpusError
from voiceharness.guide import SAMPLE_RATE_HZ

BUNDLED_ID = "greeting_hello_jarvis_en-us_160"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    yield from corpus_helpers.fresh_cache(tmp_path, monkeypatch)


def cached_files(folder) -> list:
    return sorted((folder / "speech").glob("*")) if (folder / "speech").exists() else []


def espeak_speech_file(path, text="turn off the lights", rate_hz=SAMPLE_RATE_HZ, channels=1):
    """Real espeak-ng speech (silence-framed) written at ``rate_hz`` with ``channels``."""
    from scipy.signal import resample_poly

    signal = synthesise(text, "en-us", 160)
    if rate_hz != SAMPLE_RATE_HZ:
        signal = resample_poly(signal, rate_hz // 100, SAMPLE_RATE_HZ // 100)
    data = np.stack([signal] * channels, axis=1) if channels > 1 else signal
    soundfile.write(str(path), data, rate_hz, subtype="PCM_16")
    return path


# ------------------------------------------------------------------------------------------
# Utterances and ids
# ------------------------------------------------------------------------------------------


def test_an_utterance_is_returned_as_it_is():
    utterance = load_corpus(select=BUNDLED_ID)[0]
    assert resolve_utterance(utterance) is utterance


def test_an_id_of_the_bundled_corpus_is_that_utterance_once_per_process():
    first = resolve_utterance(BUNDLED_ID)
    assert (first.id, first.expected_intent, first.text) == (BUNDLED_ID, "GREETING", "hello jarvis")
    assert resolve_utterance(BUNDLED_ID) is first
    assert first.frames(1024) is resolve_utterance(BUNDLED_ID).frames(1024)


def test_an_id_of_a_given_corpus_is_looked_up_there_only(tmp_path, fresh_cache):
    espeak_speech_file(tmp_path / "lights.wav")
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(MANIFEST_COLUMNS))
        writer.writeheader()
        writer.writerow({"id": "lights_off", "text": "turn off the lights", "expected_intent": "LIGHTS_OFF",
                         "reply_check": "", "path": "lights.wav", "voice": "", "words_per_minute": "",
                         "snr_db": "", "kind": "clean"})  # fmt: skip
    corpus = load_corpus(manifest)
    assert resolve_utterance("lights_off", corpus=corpus) is corpus.by_id["lights_off"]
    with pytest.raises(CorpusError, match=rf"'{BUNDLED_ID}' is not an utterance id of .*manifest\.csv"):
        resolve_utterance(BUNDLED_ID, corpus=corpus)


def test_a_mistyped_id_is_an_error_naming_the_closest_ids_not_speech(fresh_cache):
    with pytest.raises(CorpusError, match=rf"'greeting_helo_jarvis_en-us_160' is not an utterance id .*"
                                          rf"did you mean {BUNDLED_ID}"):  # fmt: skip
        resolve_utterance("greeting_helo_jarvis_en-us_160")
    assert cached_files(fresh_cache) == []


def test_an_expectation_given_replaces_the_utterances_own_sharing_its_audio():
    own = resolve_utterance(BUNDLED_ID)
    other = resolve_utterance(BUNDLED_ID, expected_intent="HELLO_INTENT", reply_check="nonempty")
    assert (other.expected_intent, other.reply_check, other.id) == ("HELLO_INTENT", "nonempty", BUNDLED_ID)
    assert other.pcm is own.pcm  # the same bytes object: nothing copied
    assert resolve_utterance(BUNDLED_ID, expected_intent="HELLO_INTENT", reply_check="nonempty") is other
    assert resolve_utterance(own, expected_intent="GREETING") is own  # the same expectation: itself
    assert own.expected_intent == "GREETING"  # the original is untouched


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"expected_intent": "greeting"}, r"expected_intent 'greeting' is not an intent name.*GREETING"),
        ({"reply_check": "sounds:nice"}, r"reply_check 'sounds:nice': unknown check 'sounds'"),
    ],
)
def test_a_bad_expectation_is_refused(kwargs, message):
    with pytest.raises(CorpusError, match=message):
        resolve_utterance(BUNDLED_ID, **kwargs)


def test_something_that_is_not_text_a_path_or_an_utterance_is_refused():
    with pytest.raises(CorpusError, match=r"cannot say 42 \(int\)"):
        resolve_utterance(42)


# ------------------------------------------------------------------------------------------
# Files
# ------------------------------------------------------------------------------------------


def test_a_wav_path_is_loaded_once_and_shared(tmp_path, fresh_cache):
    path = espeak_speech_file(tmp_path / "lights.wav")
    first = resolve_utterance(str(path), expected_intent="LIGHTS_OFF")
    assert (first.id, first.expected_intent, first.path) == ("lights", "LIGHTS_OFF", path)
    assert first.pcm == soundfile.read(str(path), dtype="int16")[0].astype("<i2").tobytes()
    assert resolve_utterance(path, expected_intent="LIGHTS_OFF") is first  # a Path names it too
    assert resolve_utterance(str(path)).pcm is first.pcm  # another expectation, the same audio
    assert cached_files(fresh_cache) == []


def test_a_44k_stereo_wav_is_converted_with_a_warning_naming_it(tmp_path, fresh_cache):
    path = espeak_speech_file(tmp_path / "stereo.wav", rate_hz=44_100, channels=2)
    with pytest.warns(CorpusWarning, match=r"stereo\.wav: 44100 Hz resampled to 16000 Hz; 2 channels"):
        utterance = resolve_utterance(str(path))
    assert utterance.sample_rate_hz == SAMPLE_RATE_HZ
    source_s = soundfile.info(str(path)).duration
    assert abs(utterance.num_samples - source_s * SAMPLE_RATE_HZ) <= 1
    assert 0 < utterance.speech_start_sample < utterance.speech_end_sample < utterance.num_samples
    with warnings.catch_warnings():
        warnings.simplefilter("error", CorpusWarning)  # loaded once: no second warning
        assert resolve_utterance(str(path)) is utterance


@pytest.mark.parametrize("named", ["recordings/missing.wav", "missing.wav", "~/no-such-dir/x.wav",
                                   "notes/hello", "Missing.FLAC"])  # fmt: skip
def test_a_path_that_does_not_exist_is_an_error_naming_it_never_speech(named, fresh_cache):
    with pytest.raises(CorpusError, match=rf"no audio file '{named}' .*does not exist.*text_utterance"):
        resolve_utterance(named)
    assert cached_files(fresh_cache) == []


def test_a_folder_is_not_an_audio_file(tmp_path):
    with pytest.raises(CorpusError, match="is a folder, not an audio file"):
        resolve_utterance(str(tmp_path) + "/")


def test_a_word_is_text_even_next_to_a_file_of_that_name(tmp_path, monkeypatch, fresh_cache):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hello").write_bytes(b"not audio")
    said = resolve_utterance("hello")
    assert (said.text, said.voice, said.path.parent) == ("hello", "en-us", fresh_cache / "speech")
    with pytest.raises(CorpusError, match="corpus file hello is not audio"):
        resolve_utterance("./hello")  # the documented way to name such a file


# ------------------------------------------------------------------------------------------
# Text
# ------------------------------------------------------------------------------------------


def test_text_is_synthesised_as_the_bundled_corpus_is(fresh_cache):
    said = resolve_utterance("hello jarvis")
    assert (said.text, said.voice, said.words_per_minute, said.expected_intent) == ("hello jarvis", "en-us", 160, "")
    assert said.id == text_utterance_id("hello jarvis", "en-us", 160)
    assert said.pcm == to_wav_bytes(synthesise("hello jarvis", "en-us", 160))[44:]
    # the same recipe: 300 ms of silence before the speech, 200 ms after it
    assert said.speech_start_ms == pytest.approx(300, abs=10)
    assert said.duration_ms - said.speech_end_ms == pytest.approx(200, abs=10)
    bundled = resolve_utterance(BUNDLED_ID)
    # the bundled files were made by this espeak-ng: the very same bytes
    if audio_corpus.synthesis.espeak_version() in (audio_corpus.DEFAULT_MANIFEST.parent / "build-info.json").read_text():
        assert said.pcm == bundled.pcm
        assert said.speech_end_sample == bundled.speech_end_sample


def test_a_thousand_users_saying_a_text_share_one_utterance_and_its_frames(fresh_cache):
    said = [resolve_utterance("what time is it", expected_intent="TIME_NOW") for _ in range(1000)]
    assert all(u is said[0] for u in said)
    assert len({id(u.frames(512)) for u in said}) == 1
    assert resolve_utterance("  what   time is  it ", expected_intent="TIME_NOW") is said[0]  # spaces


def test_users_saying_a_new_text_at_once_synthesise_it_once(tmp_path, monkeypatch, fresh_cache):
    bin_dir, log = logging_espeak(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    results: list[Utterance] = []
    barrier = threading.Barrier(8)

    def user() -> None:
        barrier.wait()
        results.append(resolve_utterance("open the pod bay doors"))

    threads = [threading.Thread(target=user) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and all(u is results[0] for u in results)
    assert synthesis_calls(log) == 1


GEVENT_USERS = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import gevent
    from audio_corpus import resolve_utterance
    said = gevent.joinall([gevent.spawn(resolve_utterance, text) for text in ["hail the pod bay"] * 50
                           + ["open the airlock"] * 50], raise_error=True)
    print(len({id(job.value) for job in said}), len({id(job.value.frames(1024)) for job in said}))
""")


def test_greenlets_under_gevent_saying_texts_at_once_share_one_utterance_per_text(tmp_path, fresh_cache):
    """Locust's users are greenlets: the per-text lock must be gevent's, or they would deadlock."""
    bin_dir, log = logging_espeak(tmp_path)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-c", GEVENT_USERS], capture_output=True, text=True, env=env,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "2"]  # two texts: two utterances, two tuples of frames
    assert synthesis_calls(log) == 2


def test_voice_and_rate_change_the_speech_and_the_id(fresh_cache):
    normal = resolve_utterance("echo good night")
    slow = resolve_utterance("echo good night", rate_wpm=100)
    female = resolve_utterance("echo good night", voice="en-us+f3")
    assert len({normal.id, slow.id, female.id}) == 3
    assert len({normal.pcm, slow.pcm, female.pcm}) == 3
    assert slow.speech_end_ms - slow.speech_start_ms > normal.speech_end_ms - normal.speech_start_ms
    assert (female.voice, slow.words_per_minute) == ("en-us+f3", 100)


def test_text_ids_are_readable_stable_and_keep_texts_apart():
    assert text_utterance_id("Hello, Jarvis!", "en-us+f3", 130).startswith("hello_jarvis_en-us-f3_130_")
    assert text_utterance_id("hello jarvis", "en-us", 160) == text_utterance_id("hello jarvis", "en-us", 160)
    assert text_utterance_id("Hello, Jarvis!", "en-us", 160) != text_utterance_id("hello jarvis", "en-us", 160)
    assert text_utterance_id("你好", "cmn", 160).startswith("text_cmn_160_")
    assert audio_corpus.manifest.ID_PATTERN.match(text_utterance_id("'quoted' & odd", "en+m3", 80))


def test_text_utterance_says_what_would_look_like_a_path(fresh_cache):
    half = text_utterance("1/2")
    assert half.text == "1/2" and half.speech_end_sample > half.speech_start_sample
    with pytest.raises(CorpusError, match="no audio file '1/2'"):
        resolve_utterance("1/2")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"voice": "nosuchvoice"}, r"espeak-ng has no voice 'nosuchvoice'.*espeak-ng --voices"),
        ({"voice": "en-us+nosuch"}, r"no voice variant 'nosuch' .*espeak-ng --voices=variant"),
        ({"voice": "en-us+alex"}, r"no voice variant 'alex' .*case-sensitive"),  # it is "Alex"
        ({"rate_wpm": 40}, r"speaking rate 40 wpm is outside espeak-ng's 80-450 wpm"),
        ({"rate_wpm": 451}, r"speaking rate 451 wpm is outside"),
        ({"rate_wpm": "fast"}, r"speaking rate 'fast' is not a whole number of words per minute"),
        ({"rate_wpm": 160.5}, r"speaking rate 160\.5 is not a whole number"),
    ],
)
def test_a_bad_voice_or_rate_is_refused_before_anything_is_cached(kwargs, message, fresh_cache):
    with pytest.raises(CorpusError, match=message):
        resolve_utterance("good evening", **kwargs)
    assert cached_files(fresh_cache) == []


def test_empty_text_is_refused(fresh_cache):
    with pytest.raises(CorpusError, match="nothing to say"):
        text_utterance("   ")
