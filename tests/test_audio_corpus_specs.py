"""audio_corpus.specs: what a build makes: ids and paths of clean and noisy utterances, and their rows."""

from __future__ import annotations

from audio_corpus import MANIFEST_COLUMNS
from audio_corpus.specs import Spec, manifest_rows, text_slug


def test_an_id_is_intent_words_voice_and_rate_and_a_noisy_copy_adds_its_noise():
    clean = Spec("What's the weather like?", "WEATHER_SIMPLE", "en+m3", 130)
    assert clean.id == "weather_simple_whats_the_weather_like_en-m3_130"
    assert clean.path == f"wav/{clean.id}.wav"
    noisy = Spec("echo hello world", "ECHO", "en-us", 160, "noisy", "contains:hello world", 5, "pink")
    assert noisy.id == "echo_echo_hello_world_en-us_160_snr5_pink"
    assert noisy.source == Spec("echo hello world", "ECHO", "en-us", 160, "clean", "contains:hello world")


def test_a_text_without_words_gets_a_stable_id_of_its_own():
    assert text_slug("???") == text_slug("???") != text_slug("!!!")
    assert text_slug("???").startswith("u") and len(text_slug("???")) == 9


def test_manifest_rows_hold_every_manifest_column():
    (row,) = manifest_rows([Spec("hello jarvis", "GREETING", "en-us", 160)])
    assert tuple(row) == MANIFEST_COLUMNS
    assert row["snr_db"] is None and row["kind"] == "clean" and row["path"] == "wav/greeting_hello_jarvis_en-us_160.wav"
