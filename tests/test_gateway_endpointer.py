"""gateway.endpointer on synthetic signals: where utterances start and end, and where they do not."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.endpointer import Endpointer, levels_dbfs

RATE = 16_000


def tone(ms: float, level_dbfs: float = -20.0, hz: float = 300.0) -> np.ndarray:
    t = np.arange(int(RATE * ms / 1000)) / RATE
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return 32767 * 10 ** (level_dbfs / 20) * envelope * np.sin(2 * np.pi * hz * t)


def syllables(ms: float, level_dbfs: float = -20.0) -> np.ndarray:
    """Speech-like: 160 ms voiced bursts with 40 ms dips 35 dB down, as between syllables."""
    signal = tone(ms, level_dbfs)
    t = np.arange(signal.size) / RATE * 1000
    return np.where((t % 200) < 160, signal, signal * 10 ** (-35 / 20))


def noise(ms: float, level_dbfs: float = -60.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 32767 * 10 ** (level_dbfs / 20), int(RATE * ms / 1000))


def zeros(ms: float) -> np.ndarray:
    return np.zeros(int(RATE * ms / 1000))


def pcm(*parts: np.ndarray) -> bytes:
    return np.clip(np.concatenate(parts), -32768, 32767).astype("<i2").tobytes()


def feed_in_frames(endpointer: Endpointer, audio: bytes, frame_bytes: int = 2048):
    """Feed ``audio`` in frames; return (utterance, byte offset of the frame that completed it)."""
    found = []
    for offset in range(0, len(audio), frame_bytes):
        for utterance in endpointer.feed(audio[offset : offset + frame_bytes]):
            found.append((utterance, offset + frame_bytes))
    return found


def test_levels_are_rms_dbfs_per_window_and_digital_silence_is_minus_100():
    full_scale_sine = 32767 * np.sin(2 * np.pi * 1000 * np.arange(320) / RATE)
    rows = np.stack([full_scale_sine, np.zeros(320)]).astype("<i2")
    level, floor = levels_dbfs(rows)
    assert level == pytest.approx(-3.01, abs=0.05)
    assert floor == -100.0


def test_trailing_silence_ends_an_utterance_after_silence_ms():
    endpointer = Endpointer(silence_ms=500)
    audio = pcm(noise(400), tone(800) + noise(800, seed=1), noise(1500, seed=2))
    found = feed_in_frames(endpointer, audio, frame_bytes=640)
    assert len(found) == 1
    utterance, at_byte = found[0]
    assert utterance.reason == "silence"
    speech_end_ms = 1200
    ended_ms = at_byte / 2 / RATE * 1000
    assert speech_end_ms + 500 <= ended_ms <= speech_end_ms + 500 + 60
    assert utterance.speech_ms == pytest.approx(800, abs=60)
    assert utterance.duration_ms == pytest.approx(1700, abs=40)  # lead-in, speech and the 500 ms


@pytest.mark.parametrize("silence_ms", [250, 500, 900])
def test_the_trailing_silence_is_configurable(silence_ms):
    endpointer = Endpointer(silence_ms=silence_ms)
    audio = pcm(zeros(200), tone(600), zeros(silence_ms - 60))
    assert feed_in_frames(endpointer, audio) == []
    found = endpointer.feed(pcm(zeros(100)))
    assert [u.reason for u in found] == ["silence"]


def test_pauses_between_words_shorter_than_the_silence_do_not_split_an_utterance():
    endpointer = Endpointer(silence_ms=500)
    audio = pcm(
        noise(200, seed=5),
        tone(300),
        noise(300),
        tone(300),
        noise(350, seed=3),
        tone(300),
        noise(800, seed=4),
    )
    found = feed_in_frames(endpointer, audio)
    assert [u.reason for u, _ in found] == ["silence"]
    assert found[0][0].speech_ms == pytest.approx(900, abs=60)


@pytest.mark.parametrize(
    "stream",
    [
        pcm(zeros(5000)),
        pcm(noise(5000, level_dbfs=-70)),
        pcm(noise(5000, level_dbfs=-30)),  # steady loud background: it is the floor, not speech
    ],
    ids=["digital-zero", "quiet-noise", "loud-steady-noise"],
)
def test_a_silent_or_steady_stream_yields_no_utterance(stream):
    endpointer = Endpointer()
    assert feed_in_frames(endpointer, stream) == []
    assert not endpointer.in_speech
    assert endpointer.buffered_ms <= 1500 + 64  # only the lead-in is kept


def test_steady_noise_that_stops_is_not_speech():
    """A microphone muted to digital zero after a steady hiss: the floor falls, still no utterance."""
    endpointer = Endpointer()
    assert feed_in_frames(endpointer, pcm(noise(3000, level_dbfs=-40), zeros(2000))) == []


def test_clicks_shorter_than_the_minimum_speech_do_not_start_an_utterance():
    endpointer = Endpointer(min_speech_ms=100)
    click = np.zeros(int(RATE * 0.04))
    click[:80] = 30000  # 5 ms at full scale
    audio = pcm(*[part for i in range(10) for part in (noise(300, seed=i), click)], noise(1000))
    assert feed_in_frames(endpointer, audio) == []


def test_a_long_utterance_is_cut_at_max_utterance_ms():
    endpointer = Endpointer(max_utterance_ms=2000)
    found = feed_in_frames(endpointer, pcm(zeros(200), tone(5000)))
    assert [u.reason for u, _ in found] == ["max_length", "max_length"]
    assert found[0][0].duration_ms <= 2000 + 200 + 20


def test_the_end_marker_ends_the_utterance_in_progress_once():
    endpointer = Endpointer()
    assert feed_in_frames(endpointer, pcm(zeros(200), tone(700), zeros(200))) == []
    utterance = endpointer.end_marker()
    assert utterance is not None and utterance.reason == "marker"
    assert utterance.duration_ms == pytest.approx(1100, abs=1)
    assert endpointer.end_marker() is None  # a second marker has nothing to answer


def test_a_marker_after_silence_already_ended_the_utterance_is_not_answered_twice():
    endpointer = Endpointer(silence_ms=500)
    found = feed_in_frames(endpointer, pcm(zeros(100), tone(600), zeros(800)))
    assert [u.reason for u, _ in found] == ["silence"]
    assert endpointer.end_marker() is None
    # ...but the next utterance ended by a marker is
    feed_in_frames(endpointer, pcm(zeros(100), tone(600), zeros(100)))
    assert endpointer.end_marker().reason == "marker"


def test_a_marker_with_audio_but_no_detected_speech_hands_over_the_audio():
    """An explicit marker is a request for an answer; recognition judges quiet audio."""
    endpointer = Endpointer()
    feed_in_frames(endpointer, pcm(noise(800, level_dbfs=-70)))
    utterance = endpointer.end_marker()
    assert utterance is not None and utterance.speech_ms == 0.0
    assert endpointer.end_marker() is None


def test_speech_from_the_first_sample_is_kept_whole():
    endpointer = Endpointer()
    speech = syllables(900)
    found = feed_in_frames(endpointer, pcm(speech, zeros(700)))
    assert len(found) == 1
    assert found[0][0].pcm[: 2 * len(speech)] == pcm(speech)


def test_several_utterances_in_one_stream():
    endpointer = Endpointer(silence_ms=400)
    audio = pcm(
        *[
            part
            for i in range(4)
            for part in (noise(300, seed=i), tone(500 + 100 * i), noise(700, seed=i + 9))
        ]
    )
    found = feed_in_frames(endpointer, audio)
    assert [u.reason for u, _ in found] == ["silence"] * 4
    assert [round(u.speech_ms, -2) for u, _ in found] == [500, 600, 700, 800]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=60))
def test_frame_sizes_do_not_change_where_utterances_end(sizes):
    """Odd frame sizes included: the endpointer works on samples, not on frames."""
    audio = pcm(noise(300), tone(700), noise(700, seed=1), tone(400), noise(200, seed=2))
    reference = Endpointer()
    expected = [(u.reason, u.pcm) for u, _ in feed_in_frames(reference, audio)]
    endpointer = Endpointer()
    got, offset, index = [], 0, 0
    while offset < len(audio):
        size = sizes[index % len(sizes)]
        got.extend((u.reason, u.pcm) for u in endpointer.feed(audio[offset : offset + size]))
        offset += size
        index += 1
    assert got == expected
    tail = endpointer.end_marker()
    ref_tail = reference.end_marker()
    assert (tail and tail.pcm) == (ref_tail and ref_tail.pcm)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        Endpointer(window_ms=100)
    with pytest.raises(ValueError):
        Endpointer(silence_ms=500, max_utterance_ms=400)
