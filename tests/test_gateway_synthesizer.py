"""gateway.synthesizer: reply wording and espeak-ng speech as 16 kHz PCM16."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pytest

from gateway import synthesizer as synth_module
from gateway.synthesizer import SynthesisError, Synthesizer, reply_text

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
NOON_PAST_FIVE = dt.datetime(2024, 5, 1, 12, 5)


def test_echo_says_the_words_back():
    assert reply_text("ECHO", {"words": "hello world"}) == "hello world"


def test_time_says_the_current_time():
    assert reply_text("TIME_NOW", {}, NOON_PAST_FIVE) == "It is 12:05 PM."
    assert reply_text("TIME_NOW", {}, dt.datetime(2024, 5, 1, 0, 30)) == "It is 12:30 AM."


@pytest.mark.parametrize("intent", ["GREETING", "WEATHER_SIMPLE", "UNKNOWN"])
def test_fixed_intents_have_fixed_sentences(intent):
    assert reply_text(intent) == reply_text(intent, {}, NOON_PAST_FIVE) != ""


def test_unknown_and_empty_echo_say_sorry():
    assert "did not understand" in reply_text("UNKNOWN")
    assert reply_text("ECHO", {}) == reply_text("UNKNOWN")


def test_a_missing_espeak_ng_names_the_package_to_install(monkeypatch):
    monkeypatch.setattr(synth_module.shutil, "which", lambda name: None)
    with pytest.raises(SynthesisError, match="apt-get install espeak-ng"):
        Synthesizer()


@needs_espeak
@pytest.mark.parametrize(
    "intent,slots",
    [
        ("GREETING", {}),
        ("ECHO", {"words": "hello world"}),
        ("TIME_NOW", {}),
        ("WEATHER_SIMPLE", {}),
        ("UNKNOWN", {}),
    ],
)
def test_reply_audio_is_non_silent_16khz_pcm16_of_plausible_length(intent, slots):
    text, pcm = Synthesizer().reply(intent, slots, NOON_PAST_FIVE)
    samples = np.frombuffer(pcm, dtype="<i2")
    assert len(pcm) % 2 == 0
    seconds = samples.size / 16000
    # espeak-ng at 170 wpm: roughly 0.25-0.6 s per word, plus pauses.
    words = len(text.split())
    assert 0.15 * words < seconds < 0.8 * words + 1.0
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(samples.astype(np.float64) ** 2)) / 32768)
    assert rms_dbfs > -35
    assert np.abs(samples).max() < 32767  # not clipped flat


@needs_espeak
def test_fixed_replies_are_synthesized_once_and_echoes_every_time():
    synth = Synthesizer()
    first = synth.reply("GREETING")[1]
    assert synth.reply("GREETING")[1] == first
    assert synth.cache_info().hits == 1
    synth.reply("ECHO", {"words": "one two"})
    synth.reply("ECHO", {"words": "one two"})
    assert synth.cache_info().currsize == 1


@needs_espeak
def test_the_time_reply_is_cached_per_minute():
    synth = Synthesizer()
    synth.reply("TIME_NOW", {}, NOON_PAST_FIVE)
    synth.reply("TIME_NOW", {}, NOON_PAST_FIVE.replace(second=40))
    synth.reply("TIME_NOW", {}, NOON_PAST_FIVE.replace(minute=6))
    assert (synth.cache_info().hits, synth.cache_info().misses) == (1, 2)


@needs_espeak
def test_text_starting_with_a_dash_is_spoken_not_taken_as_an_option():
    assert len(Synthesizer().synthesize("-v is not an option here")) > 16000


@needs_espeak
def test_at_22050_hz_the_audio_is_espeak_ngs_own_samples_and_at_16000_the_same_sound_resampled():
    native = Synthesizer(sample_rate_hz=22050).synthesize("hello world")
    resampled = Synthesizer().synthesize("hello world")
    native_s, resampled_s = len(native) / 2 / 22050, len(resampled) / 2 / 16000
    assert native_s == pytest.approx(resampled_s, abs=0.001)
    # resample_pcm16 does to the native audio what the 16 kHz synthesizer does to espeak-ng's.
    again = np.frombuffer(synth_module.resample_pcm16(native, 22050, 16000), "<i2").astype(int)
    assert np.abs(again - np.frombuffer(resampled, "<i2")).max() <= 2
