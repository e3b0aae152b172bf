"""What a gateway sends back for one utterance, parsed: metadata, reply audio, the reply's end.

Gateways answer in different shapes, and the harness must judge all of them (DESIGN.md):

* the reference shape — JSON metadata (``intent``, ``text``, ``reply``...), reply audio as
  raw PCM16 binary frames, and ``{"type": "reply_end"}``;
* the published SmartJARVIS gateway — ONE binary message holding a whole WAV file (piper
  voices are 22,050 Hz), no metadata, no end-of-reply event: the reply is complete when
  the WAV's data has arrived;
* raw PCM with no metadata at all — the reply ends after an inactivity gap.

The shape is detected per message (:data:`ReplyFormat.AUTO`) or forced:

=========  ==============================================================================
auto       JSON objects (text frames, or binary frames that parse as one) are metadata or
           events; a binary message opening with ``RIFF....WAVE`` starts a WAV file; any
           other binary message is raw PCM16
metadata   as auto, and the gateway is expected to say the intent in its metadata
wav        every binary message is WAV file bytes (a file may span several messages)
pcm        every binary message is raw PCM16, even one that opens with ``{`` or ``RIFF``
=========  ==============================================================================

:class:`ReplyAudio` assembles one reply's audio as it arrives and keeps the figures the
metrics need: bytes and duration of the audio itself (a WAV header is not audio), when the
first sample a listener would hear arrives on a playback timeline that starts with the first
audio (``audible``: a TTS's leading silence counts as waiting), and how often that playback
would have run dry (``playback_stalls``). WAV files are decoded with soundfile, at any sample
rate and sample width; only the RIFF chunk's declared length is read here, to know when a file
has fully arrived.

No I/O, no clock of its own: callers pass the arrival time of each message.
"""

from __future__ import annotations

import enum
import io
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soundfile

from voiceharness import guide, vad

REPLY_END_TYPE = "reply_end"
# A reply longer than this is not kept whole for judging (its figures are still counted).
MAX_KEPT_AUDIO_S = 60.0
# What streaming WAV writers put in the RIFF size field when they cannot seek back: 0, all
# ones, or a placeholder near 2 GiB (espeak-ng --stdout writes 0x7ffff024).
_RIFF_SIZE_PLACEHOLDER_MIN = 0x7FFF0000
_MIN_WAV_BYTES = 44


class ReplyFormat(enum.Enum):
    AUTO = "auto"
    METADATA = "metadata"
    WAV = "wav"
    PCM = "pcm"


# ----------------------------------------------------------------------------- one message


@dataclass(frozen=True)
class Metadata:
    """A JSON message with an intent: what the gateway says it understood and answers."""

    intent: str
    confidence: float
    transcript: str
    slots: dict[str, Any]
    reply_text: str
    correlation_id: str | None
    sample_rate_hz: int | None  # of the raw PCM reply audio, when the gateway says so


@dataclass(frozen=True)
class ReplyEnd:
    """``{"type": "reply_end"}``: the gateway's own end-of-reply event."""


@dataclass(frozen=True)
class OtherEvent:
    """A JSON object with a ``type`` we do not know (a gateway's status, say): ignored, counted."""

    kind: str


@dataclass(frozen=True)
class Malformed:
    """Something no gateway of this protocol may send (the reason says what)."""

    reason: str


@dataclass(frozen=True)
class AudioPayload:
    """Binary reply audio: ``wav`` (file bytes, maybe a piece of one) or raw ``pcm``."""

    data: bytes | memoryview
    container: str  # "wav" or "pcm"


Parsed = Metadata | ReplyEnd | OtherEvent | Malformed | AudioPayload


def is_wav(payload: bytes | memoryview) -> bool:
    """True when ``payload`` opens like a WAV file (``RIFF`` size ``WAVE``)."""
    return bytes(payload[:4]) == b"RIFF" and bytes(payload[8:12]) == b"WAVE"


def json_object(message: bytes | memoryview | str) -> dict[str, Any] | None:
    """The JSON object a message holds, or None when it holds none."""
    if isinstance(message, str):
        text = message
    else:
        # Only a frame that opens with '{' can be JSON; PCM rarely does, and if it does and
        # fails to parse it is audio, as the browser tester treats it.
        if bytes(message[:1]) != b"{":
            return None
        try:
            text = bytes(message).decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # e.g. "[" * 100000: too deep for the parser, not JSON to us
        return None
    return data if isinstance(data, dict) else None


def parse_message(message: bytes | memoryview | str, fmt: ReplyFormat = ReplyFormat.AUTO, *,
                  in_wav: bool = False) -> Parsed:
    """What one received message is. ``in_wav``: a WAV file is part-way through arriving,
    so a binary message continues it."""
    if isinstance(message, str):
        data = json_object(message)
        return Malformed("text frame that is not a JSON object") if data is None else _parse_json(data)
    if fmt is ReplyFormat.PCM:
        return AudioPayload(message, "pcm")
    if fmt is ReplyFormat.WAV or in_wav:
        return AudioPayload(message, "wav")
    data = json_object(message)
    if data is not None:
        return _parse_json(data)
    return AudioPayload(message, "wav" if _opens_a_wav(message) else "pcm")


def _opens_a_wav(payload: bytes | memoryview) -> bool:
    """A message that starts a WAV file: ``RIFF....WAVE``, or ``RIFF`` and too short to tell more
    (a header split across messages)."""
    if bytes(payload[:4]) != b"RIFF":
        return False
    return len(payload) < 12 or bytes(payload[8:12]) == b"WAVE"


def _parse_json(data: dict[str, Any]) -> Parsed:
    kind = data.get("type")
    if kind == REPLY_END_TYPE:
        return ReplyEnd()
    if "intent" not in data:
        if kind is not None:
            return OtherEvent(str(kind)[:40])
        return Malformed("JSON message without intent")
    intent = data.get("intent")
    confidence = data.get("confidence", math.nan)
    transcript = data.get("text", "")
    slots = data.get("slots") or {}
    reply_text = data.get("reply", "")
    rate = data.get("sampleRate")
    if (
        not isinstance(intent, str)
        or isinstance(confidence, bool)
        or not isinstance(confidence, int | float)
        or not isinstance(transcript, str)
        or not isinstance(slots, dict)
        or not isinstance(reply_text, str)
        or (rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0))
    ):
        return Malformed("reply metadata with wrong types")
    correlation = data.get("correlationId")
    return Metadata(intent, float(confidence), transcript, slots, reply_text,
                    None if correlation is None else str(correlation), rate)


# ----------------------------------------------------------------------------- one reply's audio


@dataclass
class _WavFile:
    """One WAV file arriving over one or more messages."""

    data: bytearray = field(default_factory=bytearray)
    decoded_samples: int = 0  # samples already handed on
    sample_rate_hz: int = 0

    @property
    def declared_bytes(self) -> int | None:
        """The file's length as its RIFF chunk declares it, or None when the writer left it unknown."""
        if len(self.data) < 8:
            return None
        size = struct.unpack_from("<I", self.data, 4)[0]
        return None if size == 0 or size >= _RIFF_SIZE_PLACEHOLDER_MIN else size + 8

    @property
    def complete(self) -> bool:
        declared = self.declared_bytes
        return declared is not None and len(self.data) >= declared

    def decode(self) -> np.ndarray | None:
        """Mono int16 samples of what has arrived (a data chunk cut short decodes what it has),
        or None while the header itself is incomplete."""
        if len(self.data) < _MIN_WAV_BYTES:
            return None
        try:
            # Read as float: libsndfile hands a float WAV to an integer reader unscaled (all zeros).
            samples, rate = soundfile.read(io.BytesIO(bytes(self.data)), dtype="float32", always_2d=True)
        except (RuntimeError, ValueError, TypeError):  # soundfile's LibsndfileError is a RuntimeError
            return None
        self.sample_rate_hz = int(rate)
        mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
        return np.clip(np.round(mono * 32768.0), -32768, 32767).astype(np.int16)


@dataclass(frozen=True)
class AudioArrived:
    """New reply audio: ``samples`` new mono samples at ``sample_rate_hz``."""

    at: float
    samples: int
    sample_rate_hz: int
    first: bool


class ReplyAudio:
    """The audio of one reply as it arrives: figures, the playback timeline, and (if kept) the samples.

    ``keep`` keeps the samples (up to :data:`MAX_KEPT_AUDIO_S`) for the judge or for saving.
    """

    def __init__(self, *, pcm_sample_rate_hz: int = guide.SAMPLE_RATE_HZ, keep: bool = False) -> None:
        self.pcm_sample_rate_hz = pcm_sample_rate_hz
        self.keep = keep
        self.messages = 0  # binary audio messages received
        self.audio_bytes = 0  # bytes of audio (PCM16 samples), headers excluded
        self.samples = 0
        self.sample_rate_hz = 0
        self.first_at = math.nan
        self.last_at = math.nan
        self.audible_at = math.nan  # when the first audible sample would play
        self.playback_stalls = 0
        self.containers: list[str] = []  # "wav"/"pcm" in order of first appearance
        self.truncated = False  # a WAV file's data never fully arrived
        self.max_abs_sample = 0
        self.not_wav_bytes = 0  # binary bytes that were to be WAV and were not
        self._play_until = math.nan  # when the audio received so far would have finished playing
        self._wav: _WavFile | None = None
        self._kept: list[np.ndarray] = []
        self._kept_samples = 0

    # -- feeding
    @property
    def in_wav(self) -> bool:
        """A WAV file has started and not fully arrived: the next binary message continues it."""
        return self._wav is not None and not self._wav.complete

    @property
    def wav_complete(self) -> bool:
        """The last WAV file's data has fully arrived (SmartJARVIS's reply is then complete)."""
        return self._wav is not None and self._wav.complete

    def add(self, payload: AudioPayload, now: float) -> AudioArrived | None:
        """One binary audio message arrived at ``now``; returns what it added, if anything yet."""
        if payload.container not in self.containers:
            self.containers.append(payload.container)
        self.messages += 1
        if payload.container == "pcm":
            data = bytes(payload.data)
            usable = len(data) - len(data) % 2
            samples = np.frombuffer(data[:usable], dtype="<i2")
            return self._arrived(samples, self.pcm_sample_rate_hz, now)
        return self._add_wav(bytes(payload.data), now)

    def _add_wav(self, data: bytes, now: float) -> AudioArrived | None:
        first_event: AudioArrived | None = None
        while data:
            if self._wav is None or self._wav.complete:
                self._wav = _WavFile()
            wav = self._wav
            wav.data += data
            data = b""
            if len(wav.data) >= 12 and not is_wav(wav.data):
                # Not a WAV file after all (bytes after a complete file, or a wrong --reply-format).
                self.not_wav_bytes += len(wav.data)
                self._wav = None
                break
            declared = wav.declared_bytes
            if declared is not None and len(wav.data) > declared:
                data = bytes(wav.data[declared:])  # the next file starts in this message
                del wav.data[declared:]
            samples = wav.decode()
            if samples is not None and len(samples) > wav.decoded_samples:
                new = samples[wav.decoded_samples :]
                wav.decoded_samples = len(samples)
                event = self._arrived(new, wav.sample_rate_hz, now)
                first_event = first_event or event
        return first_event

    def _arrived(self, samples: np.ndarray, rate: int, now: float) -> AudioArrived | None:
        if not len(samples):
            return None
        first = self.samples == 0
        if first:
            self.first_at = now
            self._play_until = now
        elif now > self._play_until:
            self.playback_stalls += 1  # the audio received so far would have finished playing
        self.last_at = now
        self.sample_rate_hz = rate
        start_play = max(now, self._play_until)
        # One pass each for the loudest sample (no int16 overflow of abs(-32768)), and the audible
        # search only while nothing was audible and only if anything here could be (per frame, at
        # thousands of replies a second, numpy's per-call overhead is the cost).
        peak = max(int(samples.max()), -int(samples.min()))
        self.max_abs_sample = max(self.max_abs_sample, peak)
        if self.audible_at != self.audible_at and peak > vad.AUDIBLE_PEAK_MIN:  # NaN: not yet audible
            index = vad.first_audible_sample(samples, rate)
            if index is not None:
                self.audible_at = start_play + index / rate
        count = len(samples)
        self._play_until = start_play + count / rate
        self.samples += count
        self.audio_bytes += 2 * count
        if self.keep and self._kept_samples < MAX_KEPT_AUDIO_S * rate:
            self._kept.append(samples if samples.base is None else samples.copy())
            self._kept_samples += count
        return AudioArrived(now, count, rate, first)

    def finish(self) -> None:
        """The reply is over (its end event, the gap, the deadline or a drop): a WAV still short is truncated."""
        if self._wav is not None and not self._wav.complete and self._wav.declared_bytes is not None:
            self.truncated = True

    # -- figures
    @property
    def played_until(self) -> float:
        """When the audio received so far will have finished playing (NaN before any arrived)."""
        return self._play_until

    @property
    def duration_ms(self) -> float:
        return self.samples * 1000.0 / self.sample_rate_hz if self.sample_rate_hz else math.nan

    @property
    def silent(self) -> bool:
        """The reply holds audio, all of it digital silence."""
        return self.samples > 0 and self.max_abs_sample <= vad.DIGITAL_SILENCE_PEAK

    @property
    def format_label(self) -> str:
        return "+".join(self.containers)

    def kept_samples(self) -> np.ndarray:
        """The samples kept so far (empty unless ``keep``), at :attr:`sample_rate_hz`."""
        if not self._kept:
            return np.zeros(0, dtype=np.int16)
        if len(self._kept) > 1:
            self._kept = [np.concatenate(self._kept)]
        return self._kept[0]
