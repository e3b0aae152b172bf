"""The checks that use only the audio devices: ``devices``, ``mic``, ``speaker`` and ``loopback``.

Each ``run_*`` function opens what it needs (:mod:`audio_probe.devices`), measures with the
pure functions of :mod:`audio_probe.signals`, and returns a :class:`~audio_probe.result.Result`;
a device that cannot be used raises :class:`voiceharness.errors.DeviceError`. The ``acoustic``
check, which also talks to a gateway, is :mod:`audio_probe.acoustic`.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import Any, TextIO

import numpy as np

from voiceharness import diagnoses, guide

from .devices import capture, list_devices, parse_device, play_and_capture
from .result import EXIT_FAIL, EXIT_PASS, Result, device_line, with_attempts
from .signals import (
    CHIRP_F0_HZ,
    CHIRP_F1_HZ,
    CHIRP_S,
    CLIP_LEVEL,
    MAX_FREQUENCY_ERROR_HZ,
    MIN_SNR_DB,
    SILENT_RMS_DBFS,
    SPEAKER_TONE_HZ,
    chirp,
    clip_count,
    find_delay,
    level_bar,
    loopback_verdict,
    mic_verdict,
    peak_dbfs,
    rms_dbfs,
    tone,
    tone_analysis,
)

SAMPLE_RATE_HZ = guide.SAMPLE_RATE_HZ
CHUNK_SAMPLES = guide.CHUNK_SAMPLES
BAR_LINE_INTERVAL_S = 0.5  # level bars: a line per 0.5 s when not on a terminal


class LevelMeter:
    """Live level bars: one line redrawn with ``\\r`` per chunk on a terminal, else a line per 0.5 s."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None, enabled: bool = True) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.enabled = enabled
        self._pending: list[np.ndarray] = []
        self._pending_s = 0.0
        self._drawn = False

    def update(self, chunk: np.ndarray, duration_s: float) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + level_bar(rms_dbfs(chunk)) + f"  peak {peak_dbfs(chunk):6.1f}")
            self.stream.flush()
            self._drawn = True
            return
        self._pending.append(chunk)
        self._pending_s += duration_s
        if self._pending_s >= BAR_LINE_INTERVAL_S - 1e-9:
            self._flush_line()

    def _flush_line(self) -> None:
        block = np.concatenate(self._pending)
        self.stream.write(level_bar(rms_dbfs(block)) + f"  peak {peak_dbfs(block):6.1f}\n")
        self.stream.flush()
        self._pending, self._pending_s = [], 0.0

    def close(self) -> None:
        if not self.enabled:
            return
        if self.tty and self._drawn:
            self.stream.write("\n")
        elif self._pending:
            self._flush_line()
        self.stream.flush()


def run_devices() -> Result:
    """The device list; fails (mic_no_device) when there is no input device."""
    devices = list_devices()
    lines = []
    for kind, channels in (("Input", "max_input_channels"), ("Output", "max_output_channels")):
        rows = [d for d in devices if getattr(d, channels) > 0]
        lines.append(f"{kind} devices (* = default):")
        if not rows:
            lines.append("    (none)")
        width = max((len(d.name) for d in rows), default=0)
        for d in rows:
            mark = "*" if (d.default_input if kind == "Input" else d.default_output) else " "
            lines.append(
                f"  {mark} {d.index:2d}  {d.name:<{width}}  {getattr(d, channels):2d} ch  "
                f"{d.default_samplerate_hz:6d} Hz  {d.hostapi}"
            )
    data = {"devices": [asdict(d) for d in devices]}
    if not any(d.max_input_channels > 0 for d in devices):
        advice = diagnoses.explain("mic_no_device", "PortAudio sees no input device")
        return Result("devices", EXIT_FAIL, "no input device", advice, lines, data, "mic_no_device")
    return Result("devices", EXIT_PASS, "OK", f"{len(devices)} devices", lines, data)


def run_mic(
    device: str | None,
    duration_s: float,
    *,
    bars: bool = True,
    bar_stream: TextIO | None = None,
    wanted_hz: int = SAMPLE_RATE_HZ,
    save: str | None = None,
) -> Result:
    """Capture with live level bars, then RMS/peak dBFS, clipping and the verdict."""
    in_spec, _ = parse_device(device)
    stream = bar_stream if bar_stream is not None else sys.stdout
    meter = LevelMeter(stream, enabled=bars)
    chunk_levels: list[float] = []

    def on_chunk(chunk: np.ndarray, seconds: float) -> None:
        chunk_levels.append(round(rms_dbfs(chunk), 1))
        meter.update(chunk, seconds)

    try:
        samples, opened, overflowed = capture(in_spec, duration_s, wanted_hz=wanted_hz, on_chunk=on_chunk)
    finally:
        meter.close()
    rms, peak, clipped = rms_dbfs(samples), peak_dbfs(samples), clip_count(samples)
    verdict = mic_verdict(rms, peak, clipped)
    if save:
        import soundfile

        soundfile.write(save, np.clip(samples, -1.0, CLIP_LEVEL), SAMPLE_RATE_HZ, subtype="PCM_16")
    seconds = samples.size / SAMPLE_RATE_HZ
    lines = [
        device_line("Input", opened) + f", PCM16, {CHUNK_SAMPLES}-sample chunks, {seconds:.1f} s",
        f"RMS {rms:.1f} dBFS · peak {peak:.1f} dBFS · clipped {clipped} samples"
        + (" · input overflowed" if overflowed else ""),
    ]
    if save:
        lines.append(f"Saved the 16 kHz capture to {save}")
    data = {
        "device": {
            "index": opened.index,
            "name": opened.name,
            "rate_hz": opened.rate_hz,
            "resampled": opened.rate_hz != SAMPLE_RATE_HZ,
            "note": opened.note,
        },
        "duration_s": round(seconds, 3),
        "rms_dbfs": round(rms, 2),
        "peak_dbfs": round(peak, 2),
        "clipped_samples": clipped,
        "overflowed": overflowed,
        "chunk_rms_dbfs": chunk_levels,
    }
    code = EXIT_PASS if verdict.passed else EXIT_FAIL
    return Result("mic", code, verdict.name, verdict.advice, lines, data, verdict.diagnosis)


def run_speaker(
    device: str | None,
    duration_s: float,
    level_dbfs: float,
    *,
    capture_back: bool = True,
    wanted_hz: int = SAMPLE_RATE_HZ,
) -> Result:
    """Play the guide's 440 Hz tone; when the input hears it back, say so with its numbers."""
    lead_s, tail_s = 0.1, 0.5
    signal = np.concatenate(
        [
            np.zeros(round(lead_s * SAMPLE_RATE_HZ)),
            tone(SPEAKER_TONE_HZ, duration_s, SAMPLE_RATE_HZ, level_dbfs),
            np.zeros(round(tail_s * SAMPLE_RATE_HZ) if capture_back else 0),
        ]
    )
    captured, inp, out = play_and_capture(signal, device, wanted_hz=wanted_hz, capture_back=capture_back)
    lines = [
        device_line("Output", out),
        f"Played {SPEAKER_TONE_HZ:.0f} Hz at {level_dbfs:.1f} dBFS peak for {duration_s:.1f} s",
    ]
    data: dict[str, Any] = {
        "output": {"index": out.index, "name": out.name, "rate_hz": out.rate_hz, "note": out.note},
        "tone_hz": SPEAKER_TONE_HZ,
        "level_dbfs": level_dbfs,
        "duration_s": duration_s,
        "confirmed": None,
    }
    if captured is None or inp is None:
        advice = "listen: you should have heard a steady 440 Hz tone; no capture was made to confirm it"
        return Result("speaker", EXIT_PASS, "played", advice, lines, data)
    # The tone's middle: skip the lead, the fades and up to 0.4 s of output latency.
    start = round((lead_s + 0.4) * SAMPLE_RATE_HZ)
    middle = captured[start : start + max(round((duration_s - 0.5) * SAMPLE_RATE_HZ), CHUNK_SAMPLES)]
    analysis = tone_analysis(middle)
    heard = (
        abs(analysis.frequency_hz - SPEAKER_TONE_HZ) <= MAX_FREQUENCY_ERROR_HZ
        and analysis.snr_db >= MIN_SNR_DB
        and analysis.level_dbfs > SILENT_RMS_DBFS
    )
    data.update(
        input={"index": inp.index, "name": inp.name},
        confirmed=heard,
        heard_frequency_hz=round(analysis.frequency_hz, 2),
        heard_level_dbfs=round(analysis.level_dbfs, 2),
        heard_snr_db=round(analysis.snr_db, 1),
    )
    lines.append(device_line("Captured back on", inp))
    lines.append(
        f"Heard {analysis.frequency_hz:.1f} Hz at {analysis.level_dbfs:.1f} dBFS RMS, "
        f"SNR {analysis.snr_db:.1f} dB"
    )
    if heard:
        return Result(
            "speaker", EXIT_PASS, "confirmed", "the input heard the tone: the output works", lines, data
        )
    advice = (
        "the input did not hear the tone: the output may be muted or disconnected, or the input "
        "cannot hear it (headphones?). If you heard it, the speaker works; --no-capture skips the check"
    )
    return Result("speaker", EXIT_FAIL, "not heard back", advice, lines, data)


def _loopback_signal(tone_s: float, level_dbfs: float) -> tuple[np.ndarray, int, int, int]:
    """silence · chirp · silence · 440 Hz tone · silence; returns it and the chirp/tone starts and tone length."""
    rate = SAMPLE_RATE_HZ
    parts = [
        np.zeros(rate // 4),
        chirp(level_dbfs=level_dbfs),
        np.zeros(rate // 4),
        tone(SPEAKER_TONE_HZ, tone_s, rate, level_dbfs),
        np.zeros(rate),
    ]
    chirp_start = parts[0].size
    tone_start = chirp_start + parts[1].size + parts[2].size
    return np.concatenate(parts), chirp_start, tone_start, parts[3].size


def run_loopback(
    device: str | None,
    duration_s: float,
    level_dbfs: float,
    *,
    wanted_hz: int = SAMPLE_RATE_HZ,
    attempts: int = 1,
) -> Result:
    """Chirp and tone out and back: latency, correlation, frequency error, SNR, THD, level.

    With ``attempts`` > 1 the measurement is repeated until one passes (a busy machine can
    drop a block of a duplex stream); every attempt's numbers are kept in ``data["attempts"]``.
    """
    return with_attempts(
        lambda: _loopback_once(device, duration_s, level_dbfs, wanted_hz),
        attempts,
        lambda r: r.exit_code == EXIT_FAIL,
        ("latency_ms", "correlation", "frequency_error_hz", "snr_db"),
    )


def _loopback_once(device: str | None, duration_s: float, level_dbfs: float, wanted_hz: int) -> Result:
    signal, chirp_start, tone_start, tone_len = _loopback_signal(duration_s, level_dbfs)
    captured, inp, out = play_and_capture(signal, device, wanted_hz=wanted_hz)
    assert captured is not None and inp is not None
    reference = signal[chirp_start : chirp_start + round(CHIRP_S * SAMPLE_RATE_HZ)]
    lag, correlation = find_delay(reference, captured)
    latency_samples = lag - chirp_start
    latency_ms = latency_samples * 1000 / SAMPLE_RATE_HZ
    trim = SAMPLE_RATE_HZ // 10
    begin = max(0, tone_start + max(0, latency_samples) + trim)
    segment = captured[begin : begin + max(tone_len - 2 * trim, CHUNK_SAMPLES)]
    analysis = tone_analysis(segment)
    error_hz = analysis.frequency_hz - SPEAKER_TONE_HZ
    capture_rms = rms_dbfs(captured)
    verdict, problems = loopback_verdict(correlation, error_hz, analysis, capture_rms)
    lines = [
        device_line("Output", out),
        device_line("Input", inp),
        (
            f"Played a {CHIRP_F0_HZ:.0f}-{CHIRP_F1_HZ:.0f} Hz chirp ({CHIRP_S:g} s) and a {SPEAKER_TONE_HZ:.0f} Hz "
            f"tone ({duration_s:g} s) at {level_dbfs:.1f} dBFS peak"
        ),
        f"Round-trip latency {latency_ms:.1f} ms ({latency_samples} samples), chirp correlation {correlation:.3f}",
        (
            f"Tone {analysis.frequency_hz:.2f} Hz (error {error_hz:+.2f} Hz) · level {analysis.level_dbfs:.1f} dBFS"
            f" · SNR {analysis.snr_db:.1f} dB · THD {analysis.thd_percent:.2g} % ({analysis.thd_db:.1f} dB)"
        ),
    ]
    lines += [f"Problem: {p}" for p in problems[1:]]
    data = {
        "output": {"index": out.index, "name": out.name, "rate_hz": out.rate_hz, "note": out.note},
        "input": {"index": inp.index, "name": inp.name, "rate_hz": inp.rate_hz},
        "latency_ms": round(latency_ms, 2),
        "latency_samples": latency_samples,
        "correlation": round(correlation, 4),
        "frequency_hz": round(analysis.frequency_hz, 3),
        "frequency_error_hz": round(error_hz, 3),
        "level_dbfs": round(analysis.level_dbfs, 2),
        "snr_db": round(analysis.snr_db, 2),
        "thd_percent": round(analysis.thd_percent, 4),
        "thd_db": round(analysis.thd_db, 2),
        "capture_rms_dbfs": round(capture_rms, 2),
        "problems": problems,
    }
    code = EXIT_PASS if verdict.passed else EXIT_FAIL
    return Result("loopback", code, verdict.name, verdict.advice, lines, data, verdict.diagnosis)
