"""audio_corpus.manifest: a manifest validated row by row at load time, the bundled one loaded whole."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import soundfile
from corpus_helpers import bundled_corpus, row, speech_wav, write_manifest

import audio_corpus
from audio_corpus import MANIFEST_COLUMNS, CorpusWarning, load_corpus
from voiceharness.errors import CorpusError
from voiceharness.guide import INTENTS
from voiceharness.reply_check import check_reply

PACKAGE_DIR = Path(audio_corpus.__file__).parent


@pytest.fixture
def speech_file(tmp_path: Path) -> Path:
    return speech_wav(tmp_path)


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


def test_missing_file_in_manifest_is_refused_at_load_time(tmp_path):
    manifest = write_manifest(tmp_path, [row("ghost")])
    with pytest.raises(CorpusError, match=r"ghost\.wav not found"):
        load_corpus(manifest)


@pytest.fixture(scope="module")
def corpus():
    return bundled_corpus()


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


def test_noisy_copies_keep_the_timing_of_their_clean_source(corpus):
    for noisy in corpus.select("kind:noisy"):
        clean = corpus.by_id[noisy.id.rsplit("_snr", 1)[0]]
        assert (noisy.speech_start_sample, noisy.speech_end_sample) == (
            clean.speech_start_sample,
            clean.speech_end_sample,
        )
