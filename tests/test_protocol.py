"""voiceharness.protocol: a ClientSession against a ServerSession in memory, no socket.

:class:`ConnectionPair` (h11's tests/helpers.py idea) carries messages between the two
sessions and owns the clock, so every timestamp and every diagnosis is exact.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import soundfile
from hypothesis import given
from hypothesis import strategies as st

from voiceharness import guide, judge
from voiceharness.judge import Expectation
from voiceharness.protocol import (
    MIC_TRANSITIONS,
    REPLY_TRANSITIONS,
    Abandon,
    AudioPayload,
    AudioReceived,
    ClientProtocolMisuse,
    ClientSession,
    EndMarker,
    GatewayFault,
    Header,
    HeaderAccepted,
    Input,
    Malformed,
    Metadata,
    Mic,
    OtherEvent,
    ProtocolError,
    Reply,
    ReplyAudio,
    ReplyEnd,
    ReplyEnded,
    ReplyFormat,
    ReplyMetadata,
    ServerSession,
    StrayMessage,
    TurnEnded,
    end_marker_message,
    is_wav,
    parse_message,
    reply_messages,
)
from voiceharness.turn import Microphone, StreamReport, TurnMeter
from voiceharness.turns import TurnContext, TurnRecord

FRAME = b"\x01\x00" * guide.CHUNK_SAMPLES
REPLY_PCM = b"\x00\x04" * 8000  # 500 ms at 1024 (audible)


class ConnectionPair:
    """A client and a server session joined in memory, with a clock that only moves when told.

    Every event the client session returns is folded into the turn's meter (as a transport
    delivers them), so :meth:`record` gives the record the harness would write: the session's
    events, measured (:class:`voiceharness.turn.TurnMeter`) and judged (:mod:`voiceharness.judge`).
    """

    def __init__(self, *, keep_reply_audio: bool = False, mic_during_reply: str = "closed",
                 **client_options: object) -> None:
        self.session = ClientSession(header=Header("session-1", "corr-1"), **client_options)  # type: ignore[arg-type]
        self.client = MeteredClient(self)
        self.server = ServerSession()
        self.now = 1000.0
        self.server_events: list[object] = []
        self.keep_reply_audio = keep_reply_audio
        self.open_mic = mic_during_reply == "open"
        self.meter: TurnMeter | None = None
        self.expected = "GREETING"
        self.report = StreamReport(0)
        self.backlog_ms = math.nan
        self.last_sent = math.nan

    def tick(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    @property
    def microphone(self) -> Microphone:
        return Microphone(self.session, self.meter, self.meter_fold, open_mic=self.open_mic)

    def meter_fold(self, events) -> None:
        for event in events:
            if self.meter is not None:
                self.meter.fold(event)

    def to_server(self, message: bytes | str) -> list[object]:
        events = self.server.receive(message)
        self.server_events.extend(events)
        return events

    def to_client(self, messages: list[bytes | str], gap_s: float = 0.01) -> list[object]:
        events: list[object] = []
        for message in messages:
            events.extend(self.client.receive(message, self.tick(gap_s)))
        return events

    def connect(self, *, as_binary: bool = True) -> list[object]:
        return self.to_server(self.session.header_message(as_binary=as_binary))

    def speak(self, frames: int = 10, *, expected: str = "GREETING", speech_end_frame: int | None = None) -> float:
        """The utterance's frames at real-time pace (each handed over 1 ms late); returns the end of speech."""
        speech_end_frame = frames - 1 if speech_end_frame is None else speech_end_frame
        self.client.begin_turn(self.now, expected=expected)
        end_of_speech = math.nan
        for index in range(frames):
            self.to_server(FRAME)
            sent = self.last_sent = self.tick(0.001)
            if index == speech_end_frame:
                self.session.speech_ended(sent)
                end_of_speech = sent
            self.tick(guide.CHUNK_MS / 1000 - 0.001)
        self.report = StreamReport(frames, 1.0)
        return end_of_speech

    def stream(self, frames: int = 10, *, expected: str = "GREETING", marker: bool = True,
               speech_end_frame: int | None = None) -> list[object]:
        """One utterance, then the end marker goes out and the microphone closes."""
        self.speak(frames, expected=expected, speech_end_frame=speech_end_frame)
        if marker:
            self.to_server(end_marker_message())
            self.last_sent = self.now
        return self.client.close_mic(self.now)

    def reply(
        self, *, intent: str = "GREETING", audio: bytes = REPLY_PCM, **options: object
    ) -> list[bytes | str]:
        return reply_messages(
            intent=intent,
            confidence=0.87,
            transcript="hello jarvis",
            slots={"name": "jarvis"},
            reply_text="Hello!",
            audio_pcm=audio,
            correlation_id=self.session.header.correlation_id,
            **options,  # type: ignore[arg-type]
        )

    def record(self, events: list[object]) -> TurnRecord:
        """The record of the turn that ``events`` end (exactly one TurnEnded among them)."""
        ended = [event for event in events if isinstance(event, TurnEnded)]
        assert len(ended) == 1, events
        assert self.meter.ended is ended[0]
        verdict = judge.judge_turn(ended[0], self.meter.audio, self.meter.metadata, Expectation(intent=self.expected),
                                   reply_timeout_ms=self.session.reply_timeout_s * 1000)
        return TurnRecord.build(TurnContext(), self.meter.timings(self.session, self.report, self.backlog_ms), verdict)


class MeteredClient:
    """The pair's client session; each call's events are folded into the turn's meter."""

    def __init__(self, pair: ConnectionPair) -> None:
        self._pair = pair

    def begin_turn(self, now: float, *, expected: str = "GREETING") -> None:
        pair = self._pair
        pair.session.begin_turn(now)
        pair.expected = expected
        pair.meter = TurnMeter(keep_reply_audio=pair.keep_reply_audio, sent_at=lambda: pair.last_sent,
                               ping_ms=pair.session.last_ping_ms)
        pair.report = StreamReport(0)
        pair.backlog_ms = math.nan

    def __getattr__(self, name: str):
        attribute = getattr(self._pair.session, name)
        if name not in ("receive", "poll", "close_mic", "connection_lost", "abandon_turn"):
            return attribute

        def folded(*args, **kwargs):
            events = attribute(*args, **kwargs)
            self._pair.meter_fold(events)
            return events

        return folded


# ----------------------------------------------------------------------------- header


@pytest.mark.parametrize("as_binary", [True, False], ids=["binary", "text"])
def test_the_header_is_accepted_as_binary_or_text(as_binary):
    pair = ConnectionPair()
    events = pair.connect(as_binary=as_binary)
    assert events == [HeaderAccepted(Header("session-1", "corr-1", 16000, 1))]
    message = pair.client.header_message(as_binary=as_binary)
    assert isinstance(message, bytes if as_binary else str)


@pytest.mark.parametrize(
    "message, reason",
    [
        ("hello", "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"correlationId": "c"}), "lacks sessionId"),
        (json.dumps({"sessionId": "s"}), "lacks correlationId"),
        (json.dumps({"sessionId": "s", "correlationId": ""}), "lacks correlationId"),
        (json.dumps({"sessionId": 1, "correlationId": "c"}), "must be strings"),
        (
            json.dumps({"sessionId": "s", "correlationId": "c", "sampleRate": 8000}),
            "sampleRate must be 16000",
        ),
        (json.dumps({"sessionId": "s", "correlationId": "c", "sampleRate": True}), "sampleRate"),
        (json.dumps({"sessionId": "s", "correlationId": "c", "protocolVersion": "1"}), "protocolVersion"),
    ],
)
def test_a_bad_header_is_a_1008_protocol_error_and_closes_the_session(message, reason):
    server = ServerSession()
    (event,) = server.receive(message)
    assert isinstance(event, ProtocolError) and event.close_code == 1008
    assert reason in event.reason
    assert server.receive(FRAME) == []  # closed: nothing more is accepted


def test_an_odd_byte_count_audio_frame_is_a_1007_protocol_error():
    pair = ConnectionPair()
    pair.connect()
    assert pair.to_server(FRAME) == [AudioReceived(FRAME)]
    (event,) = pair.to_server(b"\x00\x01\x02")
    assert isinstance(event, ProtocolError) and event.close_code == 1007


def test_the_end_marker_is_recognised_in_text_and_binary_frames_and_unknown_controls_are_ignored():
    pair = ConnectionPair()
    pair.connect()
    assert pair.to_server('{"type": "end"}') == [EndMarker()]
    assert pair.to_server(b'{"type":"end"}') == [EndMarker()]
    assert pair.to_server('{"type": "status"}') == []


# ----------------------------------------------------------------------------- what a gateway sends, one message


def test_json_metadata_is_read_from_text_and_from_binary_frames():
    text = '{"intent": "GREETING", "confidence": 0.9, "text": "hello", "reply": "Hi!", "sampleRate": 22050}'
    for message in (text, text.encode()):
        parsed = parse_message(message)
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
    assert parse_message(message) == expected


def test_binary_audio_is_wav_when_it_opens_like_one_and_pcm_otherwise():
    wav = wav_bytes(np.ones(100, dtype=np.int16), 16_000)
    assert parse_message(wav) == AudioPayload(wav, "wav")
    assert parse_message(b"RIFF\x00") == AudioPayload(b"RIFF\x00", "wav")  # a header split early
    assert parse_message(b"\x01\x00" * 10).container == "pcm"
    assert parse_message(b"{not json}").container == "pcm"  # PCM may open with "{"


def test_a_forced_format_reads_binary_messages_as_that_format():
    wav = wav_bytes(np.ones(100, dtype=np.int16), 16_000)
    assert parse_message(wav, ReplyFormat.PCM).container == "pcm"
    assert parse_message(b'{"intent": "X"}', ReplyFormat.PCM).container == "pcm"
    assert parse_message(b"\x00\x01", ReplyFormat.WAV).container == "wav"
    assert isinstance(parse_message('{"type": "reply_end"}', ReplyFormat.WAV), ReplyEnd)  # text stays JSON


# ----------------------------------------------------------------------------- turns


def wav_bytes(samples: np.ndarray, rate_hz: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate_hz, format="WAV", subtype=subtype)
    return buffer.getvalue()


def test_several_turns_on_one_connection_each_end_with_a_measured_record():
    pair = ConnectionPair()
    pair.connect()
    for number in range(3):
        assert pair.stream(frames=20) == []
        assert pair.server_events[-1] == EndMarker()
        assert sum(isinstance(e, AudioReceived) for e in pair.server_events) == 20 * (number + 1)
        assert (pair.session.mic, pair.session.reply) == (Mic.OFF, Reply.AWAITING)
        pair.tick(0.2)
        events = pair.to_client(pair.reply())
        kinds = [type(event) for event in events]
        assert kinds[0] is ReplyMetadata and kinds[-2:] == [ReplyEnded, TurnEnded]
        assert events[0].first and events[0].metadata.intent == "GREETING"
        audio = [event for event in events if isinstance(event, ReplyAudio)]
        assert len(audio) == math.ceil(len(REPLY_PCM) / guide.CHUNK_BYTES) and {a.container for a in audio} == {"pcm"}
        ended = events[-1]
        assert ended.ended_by == "reply_end" and ended.saw_metadata and not ended.fault
        record = pair.record(events)
        assert record.success and record.failure == "" and record.reply_complete
        assert (record.intent, record.intent_source, record.confidence, record.transcript) == (
            "GREETING", "metadata", 0.87, "hello jarvis")
        assert record.reply_text == "Hello!" and record.reply_format == "metadata+pcm"
        assert record.chunks_sent == 20
        assert record.chunks_received == len(audio)
        assert record.reply_audio_bytes == len(REPLY_PCM)
        assert record.reply_audio_ms == pytest.approx(500.0)
        # end of speech is when the last speech frame went to the socket: 63 ms before the mic closed
        assert record.intent_ms == pytest.approx((0.063 + 0.2 + 0.01) * 1000, abs=0.01)
        assert record.roundtrip_ms == pytest.approx(record.intent_ms + 10, abs=0.01)
        # the roundtrip in two: the client's tail (to the end marker) and the gateway's response
        assert record.client_tail_ms == pytest.approx(63.0, abs=0.01)
        assert record.client_tail_ms + record.gateway_response_ms == pytest.approx(record.roundtrip_ms, abs=0.01)
        assert record.reply_ms > record.roundtrip_ms
        assert record.turn_ms == pytest.approx(record.reply_ms + 10, abs=0.01)
        assert record.send_lateness_max_ms == pytest.approx(1.0)
        assert (pair.session.mic, pair.session.reply, pair.session.in_turn) == (Mic.OFF, Reply.IDLE, False)


@pytest.mark.parametrize("json_as_binary", [True, False], ids=["binary-json", "text-json"])
def test_metadata_is_understood_in_text_or_binary_frames(json_as_binary):
    pair = ConnectionPair()
    pair.connect()
    pair.stream()
    messages = pair.reply(json_as_binary=json_as_binary)
    assert isinstance(messages[0], bytes if json_as_binary else str)
    events = pair.to_client(messages)
    metadata = events[0]
    assert isinstance(metadata, ReplyMetadata)
    assert metadata.metadata.slots == {"name": "jarvis"} and metadata.metadata.reply_text == "Hello!"
    assert pair.record(events).intent == "GREETING"


def test_wav_reply_audio_with_metadata_is_counted_as_its_pcm_and_waits_for_reply_end():
    pair = ConnectionPair()
    pair.connect()
    pair.stream()
    messages = pair.reply(audio_as_wav=True)
    assert len(messages) == 3 and is_wav(messages[1])
    events = pair.to_client(messages[:2])
    assert not any(isinstance(e, TurnEnded) for e in events)  # metadata came: its reply_end (or the gap) ends it
    record = pair.record(pair.to_client(messages[2:]))
    assert record.chunks_received == 1 and record.reply_format == "metadata+wav"
    assert record.reply_audio_bytes == len(REPLY_PCM)


def test_the_smartjarvis_reply_one_wav_and_nothing_else_is_over_when_its_data_has_arrived():
    pair = ConnectionPair()
    pair.connect()
    speech_end = pair.speak(frames=10)
    assert pair.client.close_mic(pair.now) == []
    tone = (8000 * np.sin(np.arange(22_050) / 22_050 * 2 * np.pi * 440)).astype(np.int16)
    pair.tick(1.2)
    events = pair.client.receive(wav_bytes(tone, 22_050), pair.now)
    (audio,) = [e for e in events if isinstance(e, ReplyAudio)]
    assert audio.container == "wav" and audio.new_file and audio.is_wav
    ended = events[-1]
    assert isinstance(ended, TurnEnded) and ended.ended_by == "wav" and not ended.saw_metadata
    record = pair.record(events)
    assert record.reply_complete and record.failure == ""
    assert record.intent == "" and record.intent_source == ""  # nothing said it: the judge must hear it
    assert record.reply_format == "wav" and record.reply_sample_rate_hz == 22_050
    assert record.reply_audio_bytes == 2 * 22_050  # the data chunk, not the header
    assert record.reply_audio_ms == pytest.approx(1000.0)
    assert record.roundtrip_ms == pytest.approx((pair.now - speech_end) * 1000)
    assert record.playback_stalls is None  # one message: nothing to stall
    assert len(pair.meter.audio.kept_samples()) == 0  # not kept unless asked


def test_a_wav_whose_header_is_split_across_messages_is_assembled():
    pair = ConnectionPair(keep_reply_audio=True)
    pair.connect()
    pair.stream(marker=False)
    tone = (8000 * np.sin(np.arange(8000) / 16_000 * 2 * np.pi * 300)).astype(np.int16)
    wav = wav_bytes(tone, 16_000)
    parts = [wav[:7], wav[7:30], wav[30:1000], wav[1000:]]
    events = pair.to_client(parts[:3])
    assert not any(isinstance(e, TurnEnded) for e in events)
    events = pair.to_client(parts[3:])
    (ended,) = [e for e in events if isinstance(e, TurnEnded)]
    assert ended.ended_by == "wav" and pair.record(events).chunks_received == 4
    assert np.array_equal(pair.meter.audio.kept_samples(), tone)


def test_two_wav_files_in_one_message_are_cut_at_the_first_ones_declared_length():
    pair = ConnectionPair(keep_reply_audio=True, reply_format=ReplyFormat.WAV)
    pair.connect()
    pair.stream(marker=False)
    first, second = np.full(1600, 1000, dtype=np.int16), np.full(800, -1000, dtype=np.int16)
    events = pair.to_client([wav_bytes(first, 16_000) + wav_bytes(second, 16_000)])
    audio = [e for e in events if isinstance(e, ReplyAudio)]
    assert [(a.new_file, a.is_wav) for a in audio] == [(True, True), (True, True)]
    assert np.array_equal(pair.meter.audio.kept_samples(), np.concatenate([first, second]))


def test_bytes_that_are_not_a_wav_after_all_are_counted_not_decoded():
    pair = ConnectionPair(reply_format=ReplyFormat.WAV)
    pair.connect()
    pair.stream(marker=False)
    events = pair.to_client([b"\x01\x02" * 100])
    (audio,) = [e for e in events if isinstance(e, ReplyAudio)]
    assert not audio.is_wav
    assert pair.meter.audio.samples == 0 and pair.meter.audio.not_wav_bytes == 200


def test_a_streaming_writers_placeholder_size_is_never_complete_and_not_truncated():
    pair = ConnectionPair(reply_gap_s=0.6)
    pair.connect()
    pair.stream(marker=False)
    wav = bytearray(wav_bytes(np.full(1600, 500, dtype=np.int16), 16_000))
    wav[4:8] = (0x7FFFF024).to_bytes(4, "little")  # espeak-ng --stdout's placeholder
    assert not any(isinstance(e, TurnEnded) for e in pair.to_client([bytes(wav)]))
    events = pair.client.poll(pair.tick(0.6))
    assert events[-1].ended_by == "gap" and not events[-1].wav_truncated
    record = pair.record(events)
    assert record.failure == "" and record.reply_audio_bytes == 3200


def test_a_truncated_wav_ended_by_the_gap_is_an_incomplete_reply():
    pair = ConnectionPair(reply_gap_s=0.6)
    pair.connect()
    pair.stream(marker=False)
    wav = wav_bytes(np.full(16_000, 1000, dtype=np.int16), 16_000)
    assert not any(isinstance(e, TurnEnded) for e in pair.to_client([wav[: len(wav) // 2]]))
    events = pair.client.poll(pair.tick(0.6))
    assert events[-1].wav_truncated
    record = pair.record(events)
    assert record.failure == "incomplete_reply" and "cut short" in record.failure_detail
    assert not record.reply_complete


def test_without_reply_end_an_inactivity_gap_ends_the_reply():
    pair = ConnectionPair(reply_gap_s=0.6)
    pair.connect()
    pair.stream()
    events = pair.to_client(pair.reply(send_reply_end=False))
    assert not any(isinstance(e, TurnEnded) for e in events)
    last_reply = pair.now
    assert pair.session.next_deadline() == pytest.approx(last_reply + 0.6)
    assert pair.client.poll(last_reply + 0.59) == []
    events = pair.client.poll(last_reply + 0.6)
    assert events[0] == ReplyEnded(last_reply + 0.6, "gap")
    record = pair.record(events)
    assert record.reply_complete and record.failure == ""
    assert 0 < record.roundtrip_ms < record.reply_ms


def test_the_deadline_counts_from_the_end_of_speech():
    pair = ConnectionPair(reply_timeout_s=2.0)
    pair.connect()
    speech_end = pair.speak()
    pair.client.close_mic(pair.tick(0.5))
    assert pair.client.poll(speech_end + 1.99) == []
    events = pair.client.poll(speech_end + 2.0)
    ended = events[-1]
    assert ended.ended_by == "deadline" and not ended.saw_metadata
    record = pair.record(events)
    assert record.failure == "no_intent" and "no intent within 2000 ms" in record.failure_detail
    assert not record.reply_complete and math.isnan(record.roundtrip_ms)
    assert record.turn_ms == pytest.approx(2000.0)


def test_a_reply_during_the_trailing_silence_belongs_to_the_turn_and_closes_a_closed_mic():
    pair = ConnectionPair(mic_during_reply="closed")
    pair.connect()
    speech_end = pair.speak()
    assert pair.session.mic is Mic.TRAILING and pair.microphone.wants_audio(pair.now)
    pair.tick(0.5)  # the gateway's endpointer fired during our trailing silence
    messages = pair.reply()
    events = pair.to_client(messages[:1])  # metadata: nothing plays yet
    assert isinstance(events[0], ReplyMetadata)
    assert pair.session.reply is Reply.RECEIVING and pair.microphone.wants_audio(pair.now)
    pair.to_client(messages[1:2])  # audio plays: a closed microphone stops
    assert not pair.microphone.wants_audio(pair.now)
    pair.report = StreamReport(18)
    assert pair.client.close_mic(pair.now) == []
    assert (pair.session.mic, pair.session.reply) == (Mic.OFF, Reply.RECEIVING)
    record = pair.record(pair.to_client(messages[2:]))
    assert record.failure == "" and record.chunks_sent == 18
    assert record.roundtrip_ms == pytest.approx((pair.now - speech_end) * 1000 - 10 * (len(messages) - 2), abs=0.01)


def test_an_open_mic_keeps_sending_until_the_reply_has_played_then_the_turn_ends_with_it():
    pair = ConnectionPair(mic_during_reply="open")
    pair.connect()
    pair.speak()
    pair.tick(0.4)
    events = pair.to_client(pair.reply())  # 500 ms of audio, all of it at once
    first_audio = next(e.at for e in events if isinstance(e, ReplyAudio))
    assert not any(isinstance(e, TurnEnded) for e in events)  # the microphone still sends
    assert (pair.session.mic, pair.session.reply) == (Mic.TRAILING, Reply.COMPLETE)
    assert pair.microphone.wants_audio(first_audio + 0.49)  # the reply is still playing
    assert not pair.microphone.wants_audio(first_audio + 0.5)
    pair.report = StreamReport(25)
    (ended,) = pair.client.close_mic(first_audio + 0.5)
    record = pair.record([ended])
    assert ended.ended_by == "reply_end" and record.failure == "" and record.chunks_sent == 25
    assert (pair.session.mic, pair.session.reply) == (Mic.OFF, Reply.IDLE)


def test_an_open_mic_wants_audio_while_the_reply_plays_and_until_the_deadline():
    pair = ConnectionPair(mic_during_reply="open", reply_timeout_s=3.0)
    pair.connect()
    speech_end = pair.speak()
    pair.to_client(pair.reply(send_reply_end=False)[:2])
    assert pair.microphone.wants_audio(pair.now)  # the reply plays, the microphone stays open
    assert pair.client.poll(speech_end + 2.9) != []  # the gap ended the reply, long after it played
    assert not pair.microphone.wants_audio(speech_end + 2.9)
    pair2 = ConnectionPair(mic_during_reply="open", reply_timeout_s=3.0)
    pair2.connect()
    speech_end = pair2.speak()
    assert pair2.client.poll(speech_end + 3.0)[0].by == "deadline"
    assert pair2.session.reply is Reply.COMPLETE and not pair2.microphone.wants_audio(speech_end + 3.0)
    (ended,) = pair2.client.close_mic(pair2.now)
    assert ended.ended_by == "deadline"


def test_the_microphone_asks_the_clock_first():
    """A closed microphone past its reply's deadline stops: asking it applies the session's clock."""
    pair = ConnectionPair(reply_timeout_s=1.0)
    pair.connect()
    speech_end = pair.speak()
    assert pair.microphone.wants_audio(speech_end + 0.99)
    assert not pair.microphone.wants_audio(speech_end + 1.0)
    assert pair.session.reply_ended_by == "deadline"


def test_a_reply_before_the_end_of_speech_is_a_gateway_protocol_failure():
    pair = ConnectionPair()
    pair.connect()
    pair.client.begin_turn(pair.now)
    (fault,) = pair.client.receive(pair.reply()[0], pair.tick(0.1))
    assert isinstance(fault, GatewayFault) and "before the end of speech" in fault.detail
    assert pair.session.mic is Mic.SPEAKING  # remembered: the turn goes on until the microphone closes
    pair.session.speech_ended(pair.tick(0.5))
    pair.client.close_mic(pair.tick(0.1))
    record = pair.record(pair.to_client(pair.reply()))
    assert record.failure == "gateway_protocol" and "before the end of speech" in record.failure_detail


def test_leading_silence_in_the_reply_is_waiting_time_for_audible():
    pair = ConnectionPair()
    pair.connect()
    pair.stream()
    silence = np.zeros(4000, dtype=np.int16)  # 250 ms
    tone = (8000 * np.sin(np.arange(8000) / 16_000 * 2 * np.pi * 440)).astype(np.int16)
    audio = np.concatenate([silence, tone]).tobytes()
    record = pair.record(pair.to_client(pair.reply(audio=audio)))
    assert record.audible_ms - record.roundtrip_ms == pytest.approx(250.0, abs=10)


def test_reply_frames_slower_than_real_time_are_playback_stalls():
    pair = ConnectionPair(reply_gap_s=1.0)
    pair.connect()
    pair.stream()
    frame = (np.full(1024, 3000, dtype=np.int16)).tobytes()  # 64 ms each
    pair.to_client([frame, frame], gap_s=0.01)  # a burst: plays until +128 ms
    pair.to_client([frame], gap_s=0.2)  # arrives after the audio ran out
    pair.to_client([frame], gap_s=0.01)  # in time
    record = pair.record(pair.client.poll(pair.tick(1.0)))
    assert record.playback_stalls == 1 and record.chunks_received == 4


def test_connection_lost_while_speaking_is_recording_stopped_with_the_close_code():
    pair = ConnectionPair()
    pair.connect()
    pair.client.begin_turn(pair.now)
    events = pair.client.connection_lost(pair.tick(0.3), close_code=1011, reason="fault")
    assert events[-1].lost_while == "speaking"
    record = pair.record(events)
    assert record.failure == "recording_stopped"
    assert record.close_code == 1011 and "1011: fault" in record.failure_detail and "speaking" in record.failure_detail
    assert pair.session.closed and (pair.session.mic, pair.session.reply) == (Mic.OFF, Reply.IDLE)


def test_connection_lost_mid_reply_is_incomplete_reply():
    pair = ConnectionPair()
    pair.connect()
    pair.stream()
    messages = pair.reply()
    pair.to_client(messages[:3])  # metadata and two audio frames
    record = pair.record(pair.client.connection_lost(pair.tick(0.01), close_code=None))
    assert record.failure == "incomplete_reply"
    assert f"{2 * guide.CHUNK_BYTES} audio bytes" in record.failure_detail


def test_connection_lost_after_the_reply_with_the_mic_still_open_keeps_the_turn():
    pair = ConnectionPair(mic_during_reply="open")
    pair.connect()
    pair.speak()
    pair.to_client(pair.reply())
    record = pair.record(pair.client.connection_lost(pair.tick(0.01), close_code=1000))
    assert record.failure == "" and record.success and record.reply_complete


def test_a_reply_for_another_correlation_id_is_ignored():
    pair = ConnectionPair()
    pair.connect()
    pair.stream()
    stray = json.dumps({"intent": "ECHO", "correlationId": "someone-else"})
    (event,) = pair.to_client([stray])
    assert isinstance(event, StrayMessage) and "another correlationId" in event.reason
    assert pair.session.stray_messages == 1
    record = pair.record(pair.to_client(pair.reply()))
    assert record.intent == "GREETING"


def test_messages_outside_a_turn_are_stray_not_fatal():
    pair = ConnectionPair()
    pair.connect()
    events = pair.to_client([b"\x00\x00" * 10, '{"type": "reply_end"}', json.dumps({"intent": "GREETING"})])
    assert all(isinstance(e, StrayMessage) for e in events) and len(events) == 3
    assert (pair.session.mic, pair.session.reply) == (Mic.OFF, Reply.IDLE)


def test_a_malformed_message_during_a_reply_ends_the_turn_as_gateway_protocol():
    pair = ConnectionPair()
    pair.connect()
    pair.stream()
    events = pair.to_client(["not json at all"])
    assert isinstance(events[0], GatewayFault) and events[-1].ended_by == "protocol"
    record = pair.record(events)
    assert record.failure == "gateway_protocol" and "not a JSON object" in record.failure_detail


def test_the_uplink_backlog_found_when_the_mic_closed_is_in_the_record_even_if_the_run_stops_first():
    pair = ConnectionPair()
    pair.connect()
    pair.speak(frames=1)
    pair.client.close_mic(pair.tick(0.064))
    pair.backlog_ms = 128.0
    (ended,) = pair.client.abandon_turn(pair.tick(0.01), Abandon.RUN_STOPPED, "the run ended during the turn")
    record = pair.record([ended])
    assert record.uplink_backlog_ms == 128.0 and ended.ended_by == "abandoned"
    assert (record.failure, record.failure_detail) == ("run_stopped", "the run ended during the turn")
    pair.stream(frames=3)  # the next turn, with no figure from the I/O layer
    assert math.isnan(pair.record(pair.to_client(pair.reply())).uplink_backlog_ms)


def test_the_client_refuses_to_be_driven_out_of_order():
    client = ClientSession()
    with pytest.raises(ClientProtocolMisuse):
        client.speech_ended(1.0)
    with pytest.raises(ClientProtocolMisuse):
        client.close_mic(1.0)
    client.begin_turn(1.0)
    with pytest.raises(ClientProtocolMisuse):
        client.begin_turn(1.0)
    client.connection_lost(2.0)
    with pytest.raises(ClientProtocolMisuse, match="closed connection"):
        client.begin_turn(3.0)


def test_each_table_leads_to_its_own_states_only():
    for table, states in ((MIC_TRANSITIONS, set(Mic)), (REPLY_TRANSITIONS, set(Reply))):
        for (state, _input), new in table.items():
            assert state in states and new in states
    # A turn is over only through the reply's table: once complete (and the microphone off), or abandoned, or lost.
    ends = {event for (state, event), new in REPLY_TRANSITIONS.items() if new is Reply.IDLE and state is not Reply.IDLE}
    assert ends == {Input.TURN_OVER, Input.ABANDON, Input.LOST}
    assert [state for (state, event) in REPLY_TRANSITIONS if event is Input.TURN_OVER] == [Reply.COMPLETE]


_OPERATIONS = st.lists(
    st.sampled_from(["speech_end", "close_mic", "metadata", "audio", "reply_end", "wav", "garbage", "tick",
                     "poll", "abandon", "lost"]),
    max_size=14,
)


@given(_OPERATIONS, st.sampled_from(["open", "closed"]))
def test_whatever_happens_every_begun_turn_ends_in_exactly_one_record(operations, mic):
    """Random I/O-layer calls and gateway messages: each begun turn ends once, the session never
    leaves its tables, and out-of-order calls are refused only as misuse."""
    pair = ConnectionPair(mic_during_reply=mic, reply_timeout_s=2.0, reply_gap_s=0.3)
    pair.connect()
    ended = 0
    begun = 0
    messages = pair.reply()  # the same reply every turn
    client, session = pair.client, pair.session
    for _turn in range(3):
        if session.closed:
            break
        client.begin_turn(pair.now)
        begun += 1
        for operation in operations:
            before = (session.mic, session.reply)
            try:
                events = {
                    "speech_end": lambda: (session.speech_ended(pair.now), [])[1],
                    "close_mic": lambda: client.close_mic(pair.now),
                    "metadata": lambda: client.receive(messages[0], pair.now),
                    "audio": lambda: client.receive(messages[1], pair.now),
                    "reply_end": lambda: client.receive(messages[-1], pair.now),
                    "wav": lambda: client.receive(wav_bytes(np.ones(100, dtype=np.int16), 16_000), pair.now),
                    "garbage": lambda: client.receive("nope", pair.now),
                    "tick": lambda: (pair.tick(0.4), [])[1],
                    "poll": lambda: client.poll(pair.now),
                    "abandon": lambda: client.abandon_turn(pair.now, Abandon.RUN_STOPPED, "stop"),
                    "lost": lambda: client.connection_lost(pair.now, 1006),
                }[operation]()
            except ClientProtocolMisuse:
                assert (session.mic, session.reply) == before
                continue
            turn_ends = [e for e in events if isinstance(e, TurnEnded)]
            ended += len(turn_ends)
            if turn_ends:
                assert pair.record(events).failure != "" or pair.record(events).success
            assert session.mic in set(Mic) and session.reply in set(Reply)
            assert session.in_turn == (session.reply is not Reply.IDLE)
        # finish the turn as an I/O layer would
        if session.in_turn:
            if session.mic is Mic.SPEAKING:
                session.speech_ended(pair.now)
            if session.mic is Mic.TRAILING:
                ended += sum(isinstance(e, TurnEnded) for e in client.close_mic(pair.now))
            if session.in_turn:
                ended += len(client.abandon_turn(pair.now, Abandon.RUN_STOPPED, "end of the test"))
        assert ended == begun, (operations, mic)


@given(
    audio_bytes=st.integers(min_value=0, max_value=40_000).map(lambda n: n * 2),
    chunk_bytes=st.integers(min_value=2, max_value=9000),
)
def test_reply_audio_is_split_into_even_chunks_that_add_up(audio_bytes, chunk_bytes):
    messages = reply_messages(
        intent="ECHO",
        confidence=1,
        transcript="",
        slots={},
        reply_text="",
        audio_pcm=b"\x01" * audio_bytes,
        chunk_bytes=chunk_bytes,
    )
    audio = messages[1:-1]
    assert sum(map(len, audio)) == audio_bytes
    assert all(len(chunk) % 2 == 0 for chunk in audio)
    assert json.loads(messages[-1]) == {"type": "reply_end"}
