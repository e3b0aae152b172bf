"""audio_probe.devices: rate negotiation, PortAudio errors classified, --device parsed (no device needed)."""

from __future__ import annotations

import pytest

from audio_probe import devices


class FakePortAudioError(Exception):
    pass


def test_negotiate_rate_falls_back_to_the_device_rate_and_says_so():
    asked = []

    def check(rate):
        asked.append(rate)
        if rate != 48000:
            raise FakePortAudioError("Invalid sample rate [PaErrorCode -9997]")

    rate, note = devices.negotiate_rate(check, 16000, 48000)
    assert (rate, asked) == (48000, [16000, 48000])
    assert "does not support 16000 Hz" in note and "resampling to 16000 Hz" in note


def test_negotiate_rate_passes_other_errors_on_and_keeps_a_supported_rate():
    assert devices.negotiate_rate(lambda rate: None, 16000, 48000) == (16000, None)

    def busy(rate):
        raise FakePortAudioError("Device unavailable [PaErrorCode -9985]")

    with pytest.raises(FakePortAudioError):
        devices.negotiate_rate(busy, 16000, 48000)


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("Error opening InputStream: Device unavailable [PaErrorCode -9985]", "mic_busy"),
        (
            "Error opening InputStream: Unanticipated host error: 'Device or resource busy' [ALSA error -16]",
            "mic_busy",
        ),
        (
            "Error opening InputStream: Unanticipated host error: 'Permission denied' [ALSA error -13]",
            "mic_busy",
        ),
        ("Error querying device -1", "mic_no_device"),
        ("Error querying device 7", "mic_no_device"),
        ("No input device matching 'usb'", "mic_no_device"),
        ("Error opening InputStream: Invalid number of channels [PaErrorCode -9998]", "mic_no_device"),
        ("Error starting stream: Wait timed out [PaErrorCode -9987]", "mic_unavailable"),
    ],
)
def test_classify_device_error(message, code):
    assert devices.classify_device_error(Exception(message)) == code


def test_parse_device_takes_an_index_a_name_or_an_input_output_pair():
    assert devices.parse_device(None) == (None, None)
    assert devices.parse_device("3") == (3, 3)
    assert devices.parse_device("pulse") == ("pulse", "pulse")
    assert devices.parse_device("1,pulse") == (1, "pulse")
    assert devices.parse_device(",2") == (None, 2)
