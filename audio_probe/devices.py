"""The audio devices of the checks: PortAudio through python-sounddevice, imported inside the
functions that need it, so this module (and the whole probe) imports on a machine without
PortAudio and the checks can say so clearly.

::

    list_devices() -> list[Device]
    parse_device(spec) -> (input, output)       # --device: 3, pulse, or IN,OUT
    negotiate_rate(check, wanted_hz, device_rate_hz) -> (rate_hz, note)
    capture(device, duration_s, *, wanted_hz, on_chunk) -> (16 kHz samples, OpenedDevice, overflowed)
    play_and_capture(signal, device, *, wanted_hz, capture_back) -> (16 kHz capture, input, output)

A device that cannot be used raises :class:`voiceharness.errors.DeviceError` with a diagnosis
code of :mod:`voiceharness.diagnoses` (``portaudio_missing``, ``mic_no_device``, ``mic_busy``,
``mic_unavailable``); :class:`StreamHung` and :class:`StreamDropped` are the two ways a stream
fails mid-way. When a device refuses 16 kHz it is opened at its own rate and the audio
resampled to 16 kHz, with a note saying so.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from voiceharness import diagnoses, guide
from voiceharness.errors import DeviceError

from .signals import pcm16_to_float, resample

SAMPLE_RATE_HZ = guide.SAMPLE_RATE_HZ
CHUNK_SAMPLES = guide.CHUNK_SAMPLES
STREAM_LATENCY: str | float = "high"  # PortAudio's suggested latency for play/record streams
STREAM_WATCHDOG_S = 10.0  # a stream this late past its signal's end has stalled

def import_sounddevice() -> Any:
    """Import sounddevice; DeviceError (portaudio_missing) when PortAudio or the module is missing."""
    # PulseAudio's ALSA plugin (the "pulse"/"default" devices) otherwise picks buffers so small
    # that a duplex stream underruns on a busy machine and drops pieces of the chirp; one chunk
    # of buffering (64 ms) keeps it whole. Only PulseAudio clients read this; a user's own
    # setting wins.
    os.environ.setdefault("PULSE_LATENCY_MSEC", str(round(guide.CHUNK_MS)))
    try:
        import sounddevice
    except OSError as error:  # sounddevice raises OSError('PortAudio library not found')
        raise DeviceError(diagnoses.explain("portaudio_missing", str(error)), "portaudio_missing") from None
    except ImportError as error:
        raise DeviceError(
            diagnoses.explain(
                "mic_unavailable", f"python-sounddevice is not installed ({error}); pip install sounddevice"
            ),
            "mic_unavailable",
        ) from None
    return sounddevice


def _is_invalid_rate(error: BaseException) -> bool:
    return "Invalid sample rate" in str(error) or "-9997" in str(error)


def classify_device_error(error: BaseException) -> str:
    """The diagnosis code of a PortAudio error (or sounddevice's ValueError for a bad --device).

    paDeviceUnavailable (-9985), EBUSY and EACCES/permission errors → ``mic_busy``; no such
    device, no input channels, no default device (index -1) → ``mic_no_device``; anything
    else → ``mic_unavailable``.
    """
    text = str(error).lower()
    if any(
        s in text
        for s in (
            "-9985",
            "device unavailable",
            "busy",
            "permission",
            "denied",
            "eacces",
            "ebusy",
            "not permitted",
        )
    ):
        return "mic_busy"
    if any(
        s in text
        for s in (
            "-9996",
            "-9998",
            "no input device",
            "no output device",
            "no device",
            "error querying device",
            "invalid device",
            "invalid number of channels",
            "no such",
            "device -1",
        )
    ):
        return "mic_no_device"
    return "mic_unavailable"


def device_error(error: BaseException, what: str) -> DeviceError:
    code = classify_device_error(error)
    return DeviceError(diagnoses.explain(code, f"{what}: {error}"), code)


@dataclass(frozen=True)
class Device:
    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate_hz: int
    default_input: bool
    default_output: bool


def list_devices() -> list[Device]:
    """Every PortAudio device with its host API, channels, default rate and default flags."""
    sd = import_sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in, default_out = sd.default.device
    except sd.PortAudioError as error:
        raise device_error(error, "listing devices") from None
    if isinstance(default_in, str) or default_in is None:
        default_in = -1
    if isinstance(default_out, str) or default_out is None:
        default_out = -1
    return [
        Device(
            index=d["index"],
            name=d["name"],
            hostapi=hostapis[d["hostapi"]]["name"],
            max_input_channels=d["max_input_channels"],
            max_output_channels=d["max_output_channels"],
            default_samplerate_hz=int(d["default_samplerate"]),
            default_input=d["index"] == default_in,
            default_output=d["index"] == default_out,
        )
        for d in devices
    ]


def parse_device(spec: str | None) -> tuple[int | str | None, int | str | None]:
    """``--device`` as (input, output): ``3``, ``pulse``, or ``IN,OUT`` (either part may be empty)."""
    if spec is None or spec == "":
        return None, None

    def one(part: str) -> int | str | None:
        part = part.strip()
        if not part:
            return None
        return int(part) if part.lstrip("-").isdigit() else part

    if "," in spec:
        inp, out = spec.split(",", 1)
        return one(inp), one(out)
    return one(spec), one(spec)


def _resolve(sd: Any, spec: int | str | None, kind: str) -> dict[str, Any]:
    """The device dict sounddevice knows for ``spec`` (None = the default), or the no-device diagnosis."""
    label = "input" if kind == "input" else "output"
    try:
        available = [d for d in sd.query_devices() if d[f"max_{label}_channels"] > 0]
    except sd.PortAudioError as error:
        raise device_error(error, f"listing {label} devices") from None
    if not available:
        raise DeviceError(
            diagnoses.explain("mic_no_device", f"PortAudio sees no {label} device at all"), "mic_no_device"
        )
    try:
        return dict(sd.query_devices(spec, kind=kind))
    except (ValueError, sd.PortAudioError) as error:
        names = ", ".join(f"{d['index']} {d['name']}" for d in available)
        detail = f"{label} device {spec if spec is not None else '(default)'}: {error}; available: {names}"
        if spec is None:
            detail += "; pick one with --device"
        code = classify_device_error(error)
        if isinstance(error, ValueError):
            code = "mic_no_device"
        raise DeviceError(diagnoses.explain(code, detail), code) from None


def negotiate_rate(
    check: Callable[[int], None], wanted_hz: int, device_rate_hz: int
) -> tuple[int, str | None]:
    """The rate to open the device at: ``wanted_hz`` if ``check`` accepts it, else the device's own
    rate (and a note saying so). ``check`` raises like ``sounddevice.check_input_settings``.
    """
    try:
        check(wanted_hz)
        return wanted_hz, None
    except Exception as error:
        if not _is_invalid_rate(error) or device_rate_hz == wanted_hz:
            raise
    check(device_rate_hz)
    note = f"the device does not support {wanted_hz} Hz; using its own rate {device_rate_hz} Hz" + (
        f" and resampling to {SAMPLE_RATE_HZ} Hz" if device_rate_hz != SAMPLE_RATE_HZ else ""
    )
    return device_rate_hz, note


@dataclass
class OpenedDevice:
    """A device chosen and a rate negotiated."""

    index: int
    name: str
    rate_hz: int
    note: str | None


def _open_input(sd: Any, spec: int | str | None, wanted_hz: int) -> OpenedDevice:
    info = _resolve(sd, spec, "input")

    def check(rate: int) -> None:
        sd.check_input_settings(device=info["index"], samplerate=rate, channels=1, dtype="int16")

    try:
        rate, note = negotiate_rate(check, wanted_hz, int(info["default_samplerate"]))
    except (sd.PortAudioError, ValueError) as error:
        raise device_error(error, f"input device {info['index']} {info['name']}") from None
    return OpenedDevice(info["index"], info["name"], rate, note)


def open_duplex(
    sd: Any, in_spec: int | str | None, out_spec: int | str | None, wanted_hz: int
) -> tuple[OpenedDevice, OpenedDevice]:
    inp = _resolve(sd, in_spec, "input")
    out = _resolve(sd, out_spec, "output")

    def check(rate: int) -> None:
        sd.check_input_settings(device=inp["index"], samplerate=rate, channels=1, dtype="float32")
        sd.check_output_settings(device=out["index"], samplerate=rate, channels=1, dtype="float32")

    try:
        rate, note = negotiate_rate(check, wanted_hz, int(out["default_samplerate"]))
    except (sd.PortAudioError, ValueError) as error:
        raise device_error(
            error, f"devices {inp['index']} {inp['name']} / {out['index']} {out['name']}"
        ) from None
    return (
        OpenedDevice(inp["index"], inp["name"], rate, note),
        OpenedDevice(out["index"], out["name"], rate, note),
    )


def block_size(rate_hz: int) -> int:
    """The protocol's chunk (1024 samples, 64 ms at 16 kHz) at another rate: the same 64 ms."""
    return max(1, round(CHUNK_SAMPLES * rate_hz / SAMPLE_RATE_HZ))


def capture(
    device: int | str | None,
    duration_s: float,
    *,
    wanted_hz: int = SAMPLE_RATE_HZ,
    on_chunk: Callable[[np.ndarray, float], None] | None = None,
) -> tuple[np.ndarray, OpenedDevice, bool]:
    """Record ``duration_s`` from an input device in 64 ms chunks, resampled to 16 kHz.

    ``on_chunk(samples, seconds)`` sees each chunk at the device rate as it arrives (the level
    bars). Ctrl-C ends the capture early. Returns (16 kHz float samples, the device, whether
    the input overflowed).
    """
    sd = import_sounddevice()
    opened = _open_input(sd, device, wanted_hz)
    block = block_size(opened.rate_hz)
    total = round(duration_s * opened.rate_hz)
    chunks: list[np.ndarray] = []
    overflowed = False
    got = 0
    try:
        with sd.InputStream(
            device=opened.index, samplerate=opened.rate_hz, channels=1, dtype="int16", blocksize=block
        ) as stream:
            while got < total:
                data, overflow = stream.read(min(block, total - got))
                overflowed |= bool(overflow)
                chunk = pcm16_to_float(data[:, 0])
                chunks.append(chunk)
                got += chunk.size
                if on_chunk is not None:
                    on_chunk(chunk, chunk.size / opened.rate_hz)
    except KeyboardInterrupt:
        pass  # the capture so far is the result
    except sd.PortAudioError as error:
        raise device_error(error, f"capturing from {opened.index} {opened.name}") from None
    samples = np.concatenate(chunks) if chunks else np.zeros(0)
    return resample(samples, opened.rate_hz, SAMPLE_RATE_HZ), opened, overflowed


def play_and_capture(
    signal: np.ndarray, device: str | None, *, wanted_hz: int = SAMPLE_RATE_HZ, capture_back: bool = True
) -> tuple[np.ndarray | None, OpenedDevice | None, OpenedDevice]:
    """Play a 16 kHz signal on the output and, when ``capture_back``, record the input at the
    same time (one duplex stream, so both share a clock). Returns (16 kHz capture or None,
    input device or None, output device).
    """
    sd = import_sounddevice()
    in_spec, out_spec = parse_device(device)
    if capture_back:
        inp, out = open_duplex(sd, in_spec, out_spec, wanted_hz)
    else:
        info = _resolve(sd, out_spec, "output")

        def check(rate: int) -> None:
            sd.check_output_settings(device=info["index"], samplerate=rate, channels=1, dtype="float32")

        try:
            rate, note = negotiate_rate(check, wanted_hz, int(info["default_samplerate"]))
        except (sd.PortAudioError, ValueError) as error:
            raise device_error(error, f"output device {info['index']} {info['name']}") from None
        inp, out = None, OpenedDevice(info["index"], info["name"], rate, note)
    played = resample(signal, SAMPLE_RATE_HZ, out.rate_hz).astype(np.float32)
    try:
        recorded = _play_record(sd, played, out.rate_hz, out.index, inp.index if inp else None)
    except sd.PortAudioError as error:
        raise device_error(error, f"playing on {out.index} {out.name}") from None
    if recorded is None or inp is None:
        return None, None, out
    return resample(recorded, out.rate_hz, SAMPLE_RATE_HZ), inp, out


class StreamHung(DeviceError):
    """The audio stream stopped calling back; the process should exit without PortAudio's cleanup."""


class StreamDropped(DeviceError):
    """The audio stream ended before its signal did (PortAudio's host layer failed mid-stream);
    the stream is closed cleanly, so the check can be run again (``--attempts``)."""


def stream_dropped(stream: Any) -> StreamDropped | None:
    # PortAudio's ALSA layer over PulseAudio sometimes fails a poll and ends the stream early.
    if stream.active:
        return None
    return StreamDropped(
        diagnoses.explain(
            "mic_unavailable", "the audio stream stopped early (PortAudio reported a host error)"
        ),
        "mic_unavailable",
    )


def stream_stalled(seconds: float) -> StreamHung:
    return StreamHung(
        diagnoses.explain("mic_unavailable", f"the audio stream stalled for {seconds:.0f} s"),
        "mic_unavailable",
    )


def _play_record(
    sd: Any, played: np.ndarray, rate_hz: int, out_index: int, in_index: int | None
) -> np.ndarray | None:
    """Play ``played`` (and record as many samples when ``in_index`` is given) in 64 ms blocks,
    with a watchdog: PortAudio's ALSA layer over PulseAudio can stall, and a probe must not hang.
    """
    block = block_size(rate_hz)
    recorded = np.zeros(played.size, dtype=np.float32) if in_index is not None else None
    position = 0
    done = threading.Event()

    def fill(outdata: np.ndarray, frames: int) -> None:
        nonlocal position
        n = max(0, min(frames, played.size - position))
        outdata[:n, 0] = played[position : position + n]
        outdata[n:] = 0

    def on_output(outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        nonlocal position
        fill(outdata, frames)
        position += frames
        if position >= played.size:
            raise sd.CallbackStop

    def on_duplex(indata: np.ndarray, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        nonlocal position
        assert recorded is not None
        n = max(0, min(frames, played.size - position))
        recorded[position : position + n] = indata[:n, 0]
        on_output(outdata, frames, _time, _status)

    # "high" latency and 64 ms blocks: a measurement wants whole signals more than low latency.
    if in_index is None:
        stream = sd.OutputStream(
            samplerate=rate_hz,
            blocksize=block,
            device=out_index,
            channels=1,
            dtype="float32",
            latency=STREAM_LATENCY,
            callback=on_output,
            finished_callback=done.set,
        )
    else:
        stream = sd.Stream(
            samplerate=rate_hz,
            blocksize=block,
            device=(in_index, out_index),
            channels=1,
            dtype="float32",
            latency=STREAM_LATENCY,
            callback=on_duplex,
            finished_callback=done.set,
        )
    deadline_s = played.size / rate_hz + STREAM_WATCHDOG_S
    deadline = time.monotonic() + deadline_s
    with stream:
        while not done.wait(0.1):
            dropped = stream_dropped(stream)
            if dropped is not None:
                raise dropped
            if time.monotonic() > deadline:
                raise stream_stalled(deadline_s)
    if position < played.size:  # finished, but not because the signal was played out
        raise StreamDropped(
            diagnoses.explain("mic_unavailable", "the audio stream stopped before the signal was played"),
            "mic_unavailable",
        )
    return recorded
