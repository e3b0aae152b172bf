"""voiceharness.protocol: a ClientSession against a ServerSession in memory, no socket.

:class:`ConnectionPair` (h11's tests/helpers.py idea) carries messages between the two
sessions and owns the clock, so every timestamp and every diagnosis is exact.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voiceharness import guide
from voiceharness.protocol import (
    AudioReceived,
    ClientProtocolMisuse,
    ClientSession,
    ClientState,
    EndMarker,
    Header,
    HeaderAccepted,
    ProtocolError,
    ReplyAudio,
    ReplyEnded,
    ReplyMetadata,
    ServerSession,
    StrayMessage,
    TurnEnded,
    is_wav,
    reply_messages,
)

FRAME = b"\x01\x00" * guide.CHUNK_SAMPLES
REPLY_PCM = b"\x02\x00" * 8000  # 500 ms


class ConnectionPair:
    """A client and a server session joined in memory, with a clock that only moves when told."""

    def __init__(self, **client_options: object) -> None:
        self.client = ClientSession(header=Header("session-1", "corr-1"), **client_options)  # type: ignore[arg-type]
        self.server = ServerSession()
        self.now = 1000.0
        self.server_events: list[object] = []

    def tick(self, seconds: float) -> float:
        self.now += seconds
        return self.now

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
        return self.to_server(self.client.header_message(as_binary=as_binary))

    def stream(
        self,
        frames: int = 10,
        *,
        expected: str = "GREETING",
        marker: bool = True,
        speech_end_frame: int | None = None,
    ) -> None:
        """One utterance: ``frames`` audio frames at real-time pace, then the end marker."""
        self.client.begin_turn(
            utterance_id="hello",
            expected_intent=expected,
            speech_end_frame=frames - 1 if speech_end_frame is None else speech_end_frame,
            now=self.now,
        )
        for index in range(frames):
            due = self.now
            self.to_server(FRAME)
            self.client.audio_sent(self.tick(0.001), due=due)
            self.tick(guide.CHUNK_MS / 1000 - 0.001)
        end = self.client.end_utterance(self.now, send_marker=marker)
        if end is not None:
            self.to_server(end)

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
            correlation_id=self.client.header.correlation_id,
            **options,  # type: ignore[arg-type]
        )


def turn_record(events: list[object]):
    ended = [event for event in events if isinstance(event, TurnEnded)]
    assert len(ended) == 1, events
    return ended[0].record


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


# ----------------------------------------------------------------------------- turns


def test_several_turns_on_one_connection_each_end_with_a_scored_record():
    pair = ConnectionPair()
    pair.connect()
    for number in range(3):
        pair.stream(frames=20)
        assert pair.server_events[-1] == EndMarker()
        assert sum(isinstance(e, AudioReceived) for e in pair.server_events) == 20 * (number + 1)
        assert pair.client.state is ClientState.AWAITING_REPLY
        speech_end = pair.now
        pair.tick(0.2)
        events = pair.to_client(pair.reply())
        kinds = [type(event) for event in events]
        assert kinds[0] is ReplyMetadata and kinds[-2:] == [ReplyEnded, TurnEnded]
        audio = [event for event in events if isinstance(event, ReplyAudio)]
        assert audio[0].first and not any(a.first for a in audio[1:])
        record = turn_record(events)
        assert record.success and record.failure == "" and record.reply_complete
        assert (record.intent, record.confidence, record.transcript) == ("GREETING", 0.87, "hello jarvis")
        assert record.chunks_sent == 20
        assert record.chunks_received == math.ceil(len(REPLY_PCM) / guide.CHUNK_BYTES)
        assert record.reply_audio_bytes == len(REPLY_PCM)
        # end of speech is when the last speech frame went to the socket: 63 ms before streaming ended
        assert record.intent_ms == pytest.approx((0.2 + 0.01 + 0.063) * 1000, abs=0.01)
        assert record.roundtrip_ms == pytest.approx(record.intent_ms + 10, abs=0.01)
        assert record.reply_ms > record.roundtrip_ms
        assert record.send_lateness_max_ms == pytest.approx(1.0)
        assert pair.client.state is ClientState.IDLE
        assert speech_end < pair.now


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
    assert metadata.slots == {"name": "jarvis"} and metadata.reply_text == "Hello!"
    assert turn_record(events).success


def test_wav_reply_audio_is_detected_and_counted_as_its_pcm_bytes():
    pair = ConnectionPair()
    pair.connect()
    pair.stream()
    messages = pair.reply(audio_as_wav=True)
    assert len(messages) == 3 and is_wav(messages[1])
    record = turn_record(pair.to_client(messages))
    assert record.success and record.chunks_received == 1
    assert record.reply_audio_bytes == len(REPLY_PCM)


def test_without_reply_end_an_inactivity_gap_ends_the_reply():
    pair = ConnectionPair(reply_gap_s=0.6)
    pair.connect()
    pair.stream()
    events = pair.to_client(pair.reply(send_reply_end=False))
    assert not any(isinstance(e, TurnEnded) for e in events)
    last_reply = pair.now
    assert pair.client.next_deadline() == pytest.approx(last_reply + 0.6)
    assert pair.client.poll(last_reply + 0.59) == []
    record = turn_record(pair.client.poll(last_reply + 0.6))
    assert record.success and record.reply_complete
    assert 0 < record.roundtrip_ms < record.reply_ms


def test_a_deadline_without_any_reply_is_no_intent():
    pair = ConnectionPair(reply_timeout_s=2.0)
    pair.connect()
    pair.stream()
    ended_streaming = pair.now
    assert pair.client.poll(ended_streaming + 1.99) == []
    record = turn_record(pair.client.poll(ended_streaming + 2.0))
    assert record.failure == "no_intent" and "2000 ms" in record.failure_detail
    assert math.isnan(record.roundtrip_ms)


def test_a_wrong_intent_names_the_expected_and_the_received_intent():
    pair = ConnectionPair()
    pair.connect()
    pair.stream(expected="GREETING")
    record = turn_record(pair.to_client(pair.reply(intent="ECHO")))
    assert record.failure == "wrong_intent"
    assert record.failure_detail == "expected GREETING, got ECHO"


def test_metadata_without_audio_is_no_audio_tts():
    pair = ConnectionPair()
    pair.connect()
    pair.stream()
    record = turn_record(pair.to_client(pair.reply(audio=b"")))
    assert record.failure == "no_audio_tts" and "GREETING" in record.failure_detail
    assert record.reply_audio_bytes == 0


def test_connection_lost_while_streaming_is_recording_stopped_with_the_close_code():
    pair = ConnectionPair()
    pair.connect()
    pair.client.begin_turn(utterance_id="u", expected_intent="GREETING", speech_end_frame=30, now=pair.now)
    for _ in range(5):
        pair.client.audio_sent(pair.tick(0.064))
    record = turn_record(pair.client.connection_lost(pair.tick(0.01), close_code=1011, reason="fault"))
    assert record.failure == "recording_stopped"
    assert (
        record.close_code == 1011
        and "1011: fault" in record.failure_detail
        and "streaming" in record.failure_detail
    )
    assert pair.client.state is ClientState.CLOSED


def test_connection_lost_mid_reply_is_incomplete_reply():
    pair = ConnectionPair()
    pair.connect()
    pair.stream()
    messages = pair.reply()
    pair.to_client(messages[:3])  # metadata and two audio frames
    record = turn_record(pair.client.connection_lost(pair.tick(0.01), close_code=None))
    assert record.failure == "incomplete_reply"
    assert f"{2 * guide.CHUNK_BYTES} audio bytes" in record.failure_detail


def test_a_reply_for_another_correlation_id_is_ignored():
    pair = ConnectionPair()
    pair.connect()
    pair.stream()
    stray = json.dumps({"intent": "ECHO", "correlationId": "someone-else"})
    (event,) = pair.to_client([stray])
    assert isinstance(event, StrayMessage) and "another correlationId" in event.reason
    assert pair.client.stray_messages == 1
    record = turn_record(pair.to_client(pair.reply()))
    assert record.success and record.intent == "GREETING"


def test_messages_outside_a_turn_are_stray_not_fatal():
    pair = ConnectionPair()
    pair.connect()
    events = pair.to_client([b"\x00\x00" * 10, '{"type": "reply_end"}', json.dumps({"intent": "GREETING"})])
    assert all(isinstance(e, StrayMessage) for e in events) and len(events) == 3
    assert pair.client.state is ClientState.IDLE


def test_the_uplink_backlog_found_at_end_of_streaming_is_in_the_record_even_if_the_run_stops_first():
    pair = ConnectionPair()
    pair.connect()
    pair.client.begin_turn(utterance_id="hello", expected_intent="GREETING", speech_end_frame=0, now=pair.now)
    pair.client.audio_sent(pair.tick(0.001))
    pair.client.end_utterance(pair.tick(0.064), send_marker=True, uplink_backlog_ms=128.0)
    (ended,) = pair.client.abandon_turn(pair.tick(0.01), "run_stopped", "the run ended during the turn")
    assert ended.record.uplink_backlog_ms == 128.0
    pair.stream(frames=3)  # the next turn, with no figure from the I/O layer
    assert math.isnan(turn_record(pair.to_client(pair.reply())).uplink_backlog_ms)


def test_the_client_refuses_to_be_driven_out_of_order():
    client = ClientSession()
    with pytest.raises(ClientProtocolMisuse):
        client.audio_sent(1.0)
    with pytest.raises(ClientProtocolMisuse):
        client.end_utterance(1.0, send_marker=True)


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
