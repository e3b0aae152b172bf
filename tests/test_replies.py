"""voiceharness.replies: what one reply message is, and one reply's audio as it arrives."""

from __future__ import annotations

import io
import math
import struct

import numpy as np
import pytest
import soundfile

from voiceharness import replies
from voiceharness.replies import (
    AudioPayload,
    Malformed,
    Metadata,
    OtherEvent,
    ReplyAudio,
    ReplyEnd,
    ReplyFormat,
)


def wav_bytes(samples: np.ndarray, rate_hz: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate_hz, format="WAV", subtype=subtype)
    return buffer.getvalue()


def tone(samples: int, rate_hz: int = 16_000, amplitude: float = 0.25) -> np.ndarray:
    return (amplitude * np.sin(np.arange(samples) / rate_hz * 2 * np.pi * 440)).astype(np.float32)


# ----------------------------------------------------------------------------- one message


def test_json_metadata_is_read_from_text_and_from_binary_frames():
    text = '{"intent": "GREETING", "confidence": 0.9, "text": "hello", "reply": "Hi!", "sampleRate": 22050}'
    for message in (text, text.encode()):
        parsed = replies.parse_message(message)
        assert parsed == Metadata("GREETING", 0.9, "hello", {}, "Hi!", None, 22050)


@pytest.mark.parametrize("message, expected", [
    ('{"type": "reply_end"}', ReplyEnd()),
    (b'{"type":"reply_end"}', ReplyEnd()),
    ('{"type": "status", "load": 1}', OtherEvent("status")),
    ('{"text": "no intent"}', Malformed("JSON message without intent")),
    ('{"intent": 3}', Malformed("reply metadata with wrong types")),
    ('{"intent": "ECHO", "sampleRate": true}', Malformed("reply metadata with wrong types")),
    ("plain words", Malformed("text frame that is not a JSON object")),
])
def test_json_events_and_malformed_messages(message, expected):
    assert replies.parse_message(message) == expected


def test_binary_audio_is_wav_when_it_opens_like_one_and_pcm_otherwise():
    wav = wav_bytes(tone(100), 16_000)
    assert replies.parse_message(wav) == AudioPayload(wav, "wav")
    assert replies.parse_message(b"RIFF\x00") == AudioPayload(b"RIFF\x00", "wav")  # a header split early
    assert replies.parse_message(b"\x01\x00" * 10).container == "pcm"
    assert replies.parse_message(b"{not json}").container == "pcm"  # PCM may open with "{"


def test_a_forced_format_reads_binary_messages_as_that_format():
    wav = wav_bytes(tone(100), 16_000)
    assert replies.parse_message(wav, ReplyFormat.PCM).container == "pcm"
    assert replies.parse_message(b'{"intent": "X"}', ReplyFormat.PCM).container == "pcm"
    assert replies.parse_message(b"\x00\x01", ReplyFormat.WAV).container == "wav"
    assert isinstance(replies.parse_message('{"type": "reply_end"}', ReplyFormat.WAV), ReplyEnd)  # text stays JSON


# ----------------------------------------------------------------------------- one reply's audio


@pytest.mark.parametrize("rate_hz, subtype, channels", [
    (22_050, "PCM_16", 1), (16_000, "PCM_U8", 1), (48_000, "FLOAT", 2), (8_000, "PCM_24", 1),
])
def test_any_wav_rate_width_and_channels_is_decoded_to_mono_pcm16(rate_hz, subtype, channels):
    samples = tone(rate_hz // 2, rate_hz)
    if channels == 2:
        samples = np.stack([samples, samples], axis=1)
    audio = ReplyAudio(keep=True)
    arrived = audio.add(AudioPayload(wav_bytes(samples, rate_hz, subtype), "wav"), 10.0)
    assert arrived.samples == rate_hz // 2 and arrived.sample_rate_hz == rate_hz and arrived.first
    assert audio.wav_complete and audio.sample_rate_hz == rate_hz
    assert audio.duration_ms == pytest.approx(500.0)
    assert audio.audio_bytes == 2 * (rate_hz // 2)  # PCM16 samples: the header is not audio
    kept = audio.kept_samples()
    assert kept.dtype == np.int16 and len(kept) == rate_hz // 2
    assert abs(int(kept.max()) - 8192) < 300  # 0.25 of full scale, whatever the sample width


def test_two_wav_files_in_one_message_are_two_files():
    first, second = wav_bytes(tone(1600), 16_000), wav_bytes(tone(3200), 16_000)
    audio = ReplyAudio()
    audio.add(AudioPayload(first + second, "wav"), 1.0)
    assert audio.samples == 4800 and audio.wav_complete


def test_a_streaming_writers_placeholder_size_is_never_complete_and_not_truncated():
    wav = bytearray(wav_bytes(tone(1600), 16_000))
    struct.pack_into("<I", wav, 4, 0x7FFFF024)  # what espeak-ng --stdout writes
    audio = ReplyAudio()
    audio.add(AudioPayload(bytes(wav), "wav"), 1.0)
    assert audio.samples == 1600 and not audio.wav_complete
    audio.finish()
    assert not audio.truncated  # its end is the gap's to find, not a cut


def test_bytes_that_are_not_a_wav_after_all_are_counted_not_decoded():
    audio = ReplyAudio()
    audio.add(AudioPayload(b"\x00\x01" * 100, "wav"), 1.0)
    assert audio.samples == 0 and audio.not_wav_bytes == 200


def test_digital_silence_is_silent_and_never_audible():
    audio = ReplyAudio()
    audio.add(AudioPayload(np.zeros(16_000, dtype=np.int16).tobytes(), "pcm"), 1.0)
    assert audio.silent and math.isnan(audio.audible_at)


def test_the_playback_timeline_places_the_first_audible_sample():
    audio = ReplyAudio()
    silence = np.zeros(1024, dtype=np.int16).tobytes()  # 64 ms
    loud = (np.full(1024, 4000, dtype=np.int16)).tobytes()
    audio.add(AudioPayload(silence, "pcm"), 5.0)  # plays 5.000-5.064
    audio.add(AudioPayload(silence, "pcm"), 5.01)  # queued: 5.064-5.128
    audio.add(AudioPayload(loud, "pcm"), 5.3)  # late: the audio ran out at 5.128; plays from 5.3
    assert audio.playback_stalls == 1
    assert audio.audible_at == pytest.approx(5.3)
    assert audio.first_at == 5.0 and audio.last_at == 5.3
