"""Tests of audio_corpus: manifest validation, file checks, frames, speech end, the build."""

from __future__ import annotations

import csv
import shutil
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile

import audio_corpus
from audio_corpus import (
    MANIFEST_COLUMNS,
    CorpusWarning,
    check_reply,
    find_speech,
    load_corpus,
    load_utterance_file,
)
from audio_corpus import build as corpus_build
from voiceharness.errors import CorpusError, UsageError
from voiceharness.guide import INTENTS, SAMPLE_RATE_HZ

PACKAGE_DIR = Path(audio_corpus.__file__).parent
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def tone(duration_s: float, rate_hz: int = SAMPLE_RATE_HZ, frequency_hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(duration_s * rate_hz)) / rate_hz
    return 0.5 * np.sin(2 * np.pi * frequency_hz * t)


def write_pcm16(path: Path, signal: np.ndarray, rate_hz: int = SAMPLE_RATE_HZ) -> Path:
    soundfile.write(str(path), signal, rate_hz, subtype="PCM_16", format="WAV")
    return path


def raw_wav(data: bytes, *, declared_data_size: int | None = None, block_align: int = 2) -> bytes:
    """A hand-made PCM WAV whose data chunk may declare a size other than its real one."""
    size = len(data) if declared_data_size is None else declared_data_size
    channels, bits = 1, 16
    fmt = struct.pack("<HHIIHH", 1, channels, SAMPLE_RATE_HZ, SAMPLE_RATE_HZ * block_align, block_align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_manifest(folder: Path, rows: list[dict[str, str]], columns=MANIFEST_COLUMNS) -> Path:
    path = folder / "manifest.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def row(uid: str, intent: str = "GREETING", **overrides: str) -> dict[str, str]:
    base = {
        "id": uid, "text": "hello jarvis", "expected_intent": intent, "reply_check": "",
        "path": f"{uid}.wav", "voice": "en-us", "words_per_minute": "160", "snr_db": "", "kind": "clean",
    }  # fmt: skip
    base.update(overrides)
    return base


@pytest.fixture
def speech_file(tmp_path: Path) -> Path:
    """0.3 s silence, 0.8 s tone, 0.2 s silence: speech from 4800 to 17600 samples."""
    signal = np.concatenate([np.zeros(4800), tone(0.8), np.zeros(3200)])
    return write_pcm16(tmp_path / "speech.wav", signal)


# ------------------------------------------------------------------------------------------
# manifest validation
# ------------------------------------------------------------------------------------------


def test_a_valid_manifest_loads_with_paths_relative_to_it(tmp_path, speech_file):
    (tmp_path / "sub").mkdir()
    shutil.move(speech_file, tmp_path / "sub" / "a.wav")
    manifest = write_manifest(tmp_path, [row("a", path="sub/a.wav")])
    corpus = load_corpus(manifest)
    assert [u.id for u in corpus] == ["a"]
    assert corpus[0].words_per_minute == 160 and corpus[0].snr_db is None


def test_missing_columns_are_named_with_the_manifest(tmp_path):
    manifest = write_manifest(tmp_path, [row("a")], columns=[c for c in MANIFEST_COLUMNS if c != "kind"])
    with pytest.raises(CorpusError, match=r"manifest\.csv, line 1: missing column\(s\) kind"):
        load_corpus(manifest)


def test_a_bad_intent_name_is_refused_with_its_line(tmp_path, speech_file):
    manifest = write_manifest(tmp_path, [row("speech"), row("b", intent="play music", path="speech.wav")])
    with pytest.raises(
        CorpusError,
        match=r"manifest\.csv is invalid:\n  line 3: expected_intent 'play music' is not an intent name: "
        r"use upper-case letters, digits and _ only \(e\.g\. PLAY_MUSIC\)",
    ):
        load_corpus(manifest)


def test_a_manifest_of_ones_own_may_use_other_intents(tmp_path, speech_file):
    """Another gateway's NLU has its own commands; its corpus names them."""
    manifest = write_manifest(tmp_path, [row("speech", intent="PLAY_MUSIC"), row("b", intent="LIGHTS_OFF_2",
                                                                                   path="speech.wav")])
    corpus = load_corpus(manifest)
    assert [u.expected_intent for u in corpus] == ["PLAY_MUSIC", "LIGHTS_OFF_2"]
    assert corpus.intents() == ("LIGHTS_OFF_2", "PLAY_MUSIC")
    assert [u.id for u in corpus.select("play_music")] == ["speech"]  # a bare intent name filters


def test_a_custom_intent_one_letter_from_a_standard_one_is_loaded_with_a_warning(tmp_path, speech_file):
    manifest = write_manifest(tmp_path, [row("speech", intent="GREETNG")])
    with pytest.warns(CorpusWarning, match=r"line 2: expected_intent 'GREETNG' .* did you mean GREETING\?"):
        assert load_corpus(manifest)[0].expected_intent == "GREETNG"


def test_the_bundled_manifest_allows_only_the_smartjarvis_intents(tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    text = (copy / "manifest.csv").read_text().replace(",GREETING,", ",PLAY_MUSIC,", 1)
    (copy / "manifest.csv").write_text(text)
    assert load_corpus(copy / "manifest.csv")[0].expected_intent == "PLAY_MUSIC"  # a copy is one's own
    strict = audio_corpus.check_intent_name("PLAY_MUSIC", standard_only=True)
    assert strict is not None and "use one of GREETING, ECHO, TIME_NOW, WEATHER_SIMPLE, UNKNOWN" in strict
    assert all(audio_corpus.check_intent_name(intent, standard_only=True) is None for intent in INTENTS)


def test_duplicate_id_is_refused_naming_both_lines(tmp_path, speech_file):
    manifest = write_manifest(tmp_path, [row("speech"), row("speech")])
    with pytest.raises(CorpusError, match=r"line 3: duplicate id 'speech' \(first on line 2\)"):
        load_corpus(manifest)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "loud"}, "unknown kind 'loud'"),
        ({"kind": "noisy"}, "kind noisy needs snr_db"),
        ({"kind": "unknown"}, "kind unknown .* needs expected_intent UNKNOWN"),
        ({"snr_db": "ten"}, "snr_db 'ten' is not a number"),
        ({"words_per_minute": "fast"}, "words_per_minute 'fast' is not an integer"),
        ({"reply_check": "startswith:hello"}, "unknown check 'startswith'"),
        ({"reply_check": "regex:("}, "bad regular expression"),
        ({"id": "a b"}, "may only hold letters"),
        ({"path": ""}, "empty path"),
    ],
)
def test_bad_cells_are_refused(tmp_path, overrides, message):
    manifest = write_manifest(tmp_path, [row("a", **overrides)])
    with pytest.raises(CorpusError, match=message):
        load_corpus(manifest)


def test_all_problems_of_a_manifest_are_reported_together(tmp_path):
    manifest = write_manifest(tmp_path, [row("a", intent="x"), row("b", kind="y")])
    with pytest.raises(CorpusError) as caught:
        load_corpus(manifest)
    assert "line 2" in str(caught.value) and "line 3" in str(caught.value)


def test_missing_manifest_says_how_to_rebuild(tmp_path):
    with pytest.raises(CorpusError, match="not found.*audio_corpus.build"):
        load_corpus(tmp_path / "nope.csv")


def test_corpus_error_is_a_usage_error():
    assert issubclass(CorpusError, UsageError)


# ------------------------------------------------------------------------------------------
# file checks and conversions
# ------------------------------------------------------------------------------------------


def test_44k_stereo_is_converted_to_16k_mono_with_a_warning_naming_the_file(tmp_path):
    left = tone(1.0, 44_100)
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), np.stack([left, left], axis=1), 44_100, subtype="PCM_16")
    with pytest.warns(CorpusWarning, match=r"stereo\.wav: 44100 Hz resampled to 16000 Hz; 2 channels"):
        utterance = load_utterance_file(path, expected_intent="GREETING")
    assert utterance.sample_rate_hz == SAMPLE_RATE_HZ
    assert abs(utterance.num_samples - SAMPLE_RATE_HZ) <= 1
    # Mono mix of two equal channels keeps the amplitude (0.5 of full scale).
    assert abs(np.abs(utterance.samples).max() / 32767 - 0.5) < 0.02


def test_float_wav_is_converted_to_pcm16_with_a_warning(tmp_path):
    path = tmp_path / "float.wav"
    soundfile.write(str(path), tone(0.5), SAMPLE_RATE_HZ, subtype="FLOAT")
    with pytest.warns(CorpusWarning, match="FLOAT samples converted to PCM16"):
        utterance = load_utterance_file(path, expected_intent="ECHO")
    assert utterance.num_samples == 8000
    assert np.abs(utterance.samples).max() == pytest.approx(0.5 * 32767, abs=2)


def test_a_canonical_file_loads_without_a_warning_and_keeps_its_bytes(speech_file):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        utterance = load_utterance_file(speech_file, expected_intent="GREETING")
    data = speech_file.read_bytes()
    assert utterance.pcm == data[44:]
    assert utterance.id == "speech"


def test_truncated_file_is_refused(tmp_path, speech_file):
    path = tmp_path / "cut.wav"
    path.write_bytes(speech_file.read_bytes()[:5000])
    with pytest.raises(
        CorpusError, match=r"cut\.wav is truncated: its data chunk declares 41600 bytes but only 4956"
    ):
        load_utterance_file(path, expected_intent="GREETING")


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(CorpusError, match=r"empty\.wav is empty \(0 bytes\)"):
        load_utterance_file(path, expected_intent="GREETING")


def test_zero_length_audio_is_refused(tmp_path):
    path = tmp_path / "zero.wav"
    path.write_bytes(raw_wav(b""))
    with pytest.raises(CorpusError, match=r"zero\.wav holds zero-length audio"):
        load_utterance_file(path, expected_intent="GREETING")


def test_odd_byte_count_data_chunk_is_refused(tmp_path):
    path = tmp_path / "odd.wav"
    path.write_bytes(raw_wav(b"\x01\x00" * 100 + b"\x01") + b"\x00")  # + RIFF pad byte
    with pytest.raises(CorpusError, match=r"odd\.wav has a data chunk of 201 bytes.*odd byte count"):
        load_utterance_file(path, expected_intent="GREETING")


def test_text_file_named_wav_is_refused(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are my notes, not audio\n")
    with pytest.raises(CorpusError, match=r"notes\.wav is not audio libsndfile can read.*'these are my not'"):
        load_utterance_file(path, expected_intent="GREETING")


def test_missing_file_in_manifest_is_refused_at_load_time(tmp_path):
    manifest = write_manifest(tmp_path, [row("ghost")])
    with pytest.raises(CorpusError, match=r"ghost\.wav not found"):
        load_corpus(manifest)


def test_a_bad_intent_name_of_a_single_file_is_refused(speech_file):
    with pytest.raises(CorpusError, match=r"speech\.wav: expected_intent 'hello!' is not an intent name"):
        load_utterance_file(speech_file, expected_intent="hello!")
    assert load_utterance_file(speech_file, expected_intent="HELLO").expected_intent == "HELLO"
    assert load_utterance_file(speech_file, expected_intent="").expected_intent == ""  # the caller judges


# ------------------------------------------------------------------------------------------
# frames and speech detection
# ------------------------------------------------------------------------------------------


def test_frames_are_zero_copy_views_of_the_one_pcm_buffer(speech_file):
    utterance = load_utterance_file(speech_file, expected_intent="GREETING")
    frames = utterance.frames(1024)
    assert all(isinstance(f, memoryview) and f.obj is utterance.pcm and f.readonly for f in frames)
    assert b"".join(frames) == utterance.pcm
    # 20800 samples = 20 full frames of 1024 and a short last frame of 320 samples.
    assert [len(f) for f in frames] == [2048] * 20 + [640]
    assert len(frames) == utterance.frame_count(1024)


def test_frames_are_cached_so_all_users_share_one_tuple(speech_file):
    utterance = load_utterance_file(speech_file, expected_intent="GREETING")
    assert utterance.frames(1024) is utterance.frames(1024)
    assert utterance.frames(320) is not utterance.frames(1024)
    assert len(utterance.frames(320)) == 65


def test_bad_chunk_size_is_refused(speech_file):
    utterance = load_utterance_file(speech_file, expected_intent="GREETING")
    with pytest.raises(ValueError, match="positive integer"):
        utterance.frames(0)


def test_speech_end_is_found_within_60_ms_of_a_tone_ending(speech_file):
    utterance = load_utterance_file(speech_file, expected_intent="GREETING")
    assert abs(utterance.speech_end_ms - 1100.0) <= 60
    assert abs(utterance.speech_start_ms - 300.0) <= 60
    assert utterance.duration_ms == pytest.approx(1300.0)
    # 17600 / 1024 = 17.2: the last speech sample travels in frame 17.
    assert utterance.speech_end_frame(1024) == 17


def test_speech_end_is_found_in_noise_at_20_db(tmp_path):
    rng = np.random.default_rng(1)
    signal = np.concatenate([np.zeros(4800), tone(0.8), np.zeros(3200)])
    signal += rng.standard_normal(signal.size) * 0.5 / np.sqrt(2) / 10  # 20 dB under the tone
    start, end = find_speech(np.round(signal * 32767), SAMPLE_RATE_HZ)
    assert abs(end - 17600) <= 0.060 * SAMPLE_RATE_HZ
    assert abs(start - 4800) <= 0.060 * SAMPLE_RATE_HZ


def test_silence_has_no_speech():
    assert find_speech(np.zeros(16000), SAMPLE_RATE_HZ) == (0, 0)


# ------------------------------------------------------------------------------------------
# reply checks
# ------------------------------------------------------------------------------------------


def test_check_reply_for_echo_needs_the_echoed_words(speech_file):
    echo = load_utterance_file(speech_file, expected_intent="ECHO", reply_check="contains:hello world")
    assert check_reply(echo, "ECHO", "Hello, world!") is None
    assert "does not contain 'hello world'" in check_reply(echo, "ECHO", "hello there")
    assert "no reply text" in check_reply(echo, "ECHO", None)
    assert check_reply(echo, "GREETING", "hello world") == "intent GREETING, expected ECHO"
    assert "no intent received" in check_reply(echo, None, "hello world")


def test_check_reply_without_a_check_only_checks_the_intent(speech_file):
    greeting = load_utterance_file(speech_file, expected_intent="GREETING")
    assert check_reply(greeting, "GREETING", "") is None


@pytest.mark.parametrize(
    ("check", "reply", "ok"),
    [
        ("any:sunny|rain", "It will rain today", True),
        ("any:sunny|rain", "It is cloudy", False),
        (r"regex:\d{1,2}:\d\d", "It is 12:45", True),
        (r"regex:\d{1,2}:\d\d", "It is noon", False),
        ("nonempty", "anything", True),
        ("contains:whats the weather", "What's the weather", True),
    ],
)
def test_reply_check_language(speech_file, check, reply, ok):
    utterance = load_utterance_file(speech_file, expected_intent="WEATHER_SIMPLE", reply_check=check)
    assert (check_reply(utterance, "WEATHER_SIMPLE", reply) is None) is ok


# ------------------------------------------------------------------------------------------
# the committed corpus
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a committed file that needs converting is a bug
        return load_corpus()


def test_committed_corpus_files_are_16k_mono_pcm16(corpus):
    for utterance in corpus:
        info = soundfile.info(str(utterance.path))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")


def test_committed_corpus_covers_every_intent_and_kind_with_unique_ids(corpus):
    assert corpus.intents() == INTENTS
    assert set(corpus.counts("kind")) == {"clean", "noisy", "unknown"}
    assert len(corpus.by_id) == len(corpus)
    assert 40 <= len(corpus) <= 80
    assert sum(u.path.stat().st_size for u in corpus) < 5_000_000
    for text, intent in {"hello jarvis": "GREETING", "echo hello world": "ECHO",
                         "what time is it": "TIME_NOW", "how is the weather": "WEATHER_SIMPLE"}.items():  # fmt: skip
        spoken = [u for u in corpus if u.text == text and u.kind == "clean"]
        assert {u.expected_intent for u in spoken} == {intent}
        assert len({u.voice for u in spoken}) >= 3 and len({u.words_per_minute for u in spoken}) >= 2
    assert {u.snr_db for u in corpus if u.kind == "noisy"} == {20.0, 10.0, 5.0}


def test_every_echo_utterance_checks_its_echoed_words(corpus):
    for utterance in corpus.select("ECHO"):
        words = utterance.text.split(" ", 1)[1]
        assert utterance.reply_check == f"contains:{words}"
        assert check_reply(utterance, "ECHO", f"you said {words}") is None


def test_committed_corpus_has_speech_framed_by_silence(corpus):
    for utterance in corpus:
        assert utterance.speech_start_ms == pytest.approx(300, abs=20)
        assert utterance.duration_ms - utterance.speech_end_ms == pytest.approx(200, abs=20)


def test_select_by_ids_intents_and_kinds(corpus):
    assert {u.expected_intent for u in corpus.select("GREETING,ECHO")} == {"GREETING", "ECHO"}
    clean_greetings = corpus.select("greeting,kind:clean")
    assert clean_greetings and all(
        u.kind == "clean" and u.expected_intent == "GREETING" for u in clean_greetings
    )
    assert [u.id for u in corpus.select("greeting_hello_jarvis_en-us_160")] == [
        "greeting_hello_jarvis_en-us_160"
    ]
    assert all(u.id.startswith("time_now_") for u in corpus.select("time_now_*"))
    assert len(load_corpus(select="kind:unknown")) == 4


def test_select_matching_nothing_lists_what_is_available(corpus):
    with pytest.raises(CorpusError, match="'play_music' matches no utterance.*Available intents: GREETING"):
        corpus.select("play_music")
    with pytest.raises(CorpusError, match="ids: .*greeting_hello_jarvis_en-us_160"):
        load_corpus(select="kind:loud")


def test_noisy_copies_keep_the_timing_of_their_clean_source(corpus):
    for noisy in corpus.select("kind:noisy"):
        clean = corpus.by_id[noisy.id.rsplit("_snr", 1)[0]]
        assert (noisy.speech_start_sample, noisy.speech_end_sample) == (
            clean.speech_start_sample,
            clean.speech_end_sample,
        )


def test_build_check_accepts_the_committed_corpus():
    assert corpus_build.check() == []


def test_build_check_finds_a_missing_and_an_unlisted_file(tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    (copy / "wav" / "greeting_hello_jarvis_en-us_160.wav").rename(copy / "wav" / "stray.wav")
    problems = corpus_build.check(copy)
    assert len(problems) == 1 and "greeting_hello_jarvis_en-us_160.wav not found" in problems[0]


# ------------------------------------------------------------------------------------------
# the build
# ------------------------------------------------------------------------------------------


@needs_espeak
def test_build_is_byte_reproducible(tmp_path):
    # A noisy utterance exercises synthesis, resampling, the seeded noise and the WAV writer.
    uid = "echo_echo_hello_world_en-us_160_snr5_pink"
    for name in ("one", "two"):
        corpus_build.build(tmp_path / name, [uid], quiet=True)
    first = (tmp_path / "one" / "wav" / f"{uid}.wav").read_bytes()
    assert first == (tmp_path / "two" / "wav" / f"{uid}.wav").read_bytes()
    assert load_corpus(tmp_path / "one" / "manifest.csv")[0].id == uid
    if corpus_build.espeak_version() in (PACKAGE_DIR / "build-info.json").read_text():
        assert first == (PACKAGE_DIR / "wav" / f"{uid}.wav").read_bytes()


def test_build_names_the_apt_package_when_espeak_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(CorpusError, match="apt-get install espeak-ng"):
        corpus_build.build(tmp_path)
    assert corpus_build.main(["--out", str(tmp_path)]) == 2


def test_build_refuses_a_partial_build_over_the_bundled_manifest():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    with pytest.raises(CorpusError, match="--only would leave the bundled manifest incomplete"):
        corpus_build.build(only=["greeting_hello_jarvis_en-us_160"])


def test_noise_is_seeded_and_coloured():
    white = corpus_build.noise("white", 16000, 7)
    assert np.array_equal(white, corpus_build.noise("white", 16000, 7))
    pink = corpus_build.noise("pink", 16000, 7)
    spectrum = np.abs(np.fft.rfft(pink)) ** 2
    # Pink: the power in 100-200 Hz is far above the power in 4-8 kHz per hertz.
    assert spectrum[100:200].mean() > 10 * spectrum[4000:8000].mean()
    assert np.sqrt(np.mean(pink**2)) == pytest.approx(1.0)
