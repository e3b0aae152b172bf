"""voiceharness.turn: one turn from its first frame to its judged record, over a transport.

The transport here is in memory with a simulated clock: the "gateway" is the protocol's own
:class:`ServerSession` with an endpointer of a few silent frames or the end marker, answering
with :func:`reply_messages` (or one WAV, as the published SmartJARVIS gateway does) after a
set delay. So every timing is exact and every path of the driver is reached.
"""

from __future__ import annotations

import heapq
import io
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import soundfile

from voiceharness import guide, protocol
from voiceharness.judge import Expectation
from voiceharness.listener import Heard
from voiceharness.protocol import Mic, Reply, ReplyAudio
from voiceharness.turn import Microphone, ReplyRecording, StreamPlan, StreamReport, TransportEvents, run_turn
from voiceharness.turns import TurnContext

SPEECH_FRAME = np.full(guide.CHUNK_SAMPLES, 3000, dtype=np.int16).tobytes()
SILENCE = bytes(guide.CHUNK_BYTES)
FRAME_S = guide.CHUNK_MS / 1000
REPLY_AUDIO = np.full(8000, 2000, dtype=np.int16).tobytes()  # 500 ms


@dataclass
class SimulatedLink:
    """A gateway on the other end of an in-memory link, and the clock both share."""

    session: protocol.ClientSession
    reply_delay_s: float = 0.3
    endpointer_frames: int = 8  # silent frames that end an utterance (512 ms)
    shape: str = "metadata"  # "metadata" (reference), "wav" (SmartJARVIS), "none" (never answers)
    intent: str = "GREETING"
    send_fails_after: int | None = None
    now: float = 100.0
    events: TransportEvents = field(default_factory=TransportEvents)
    server: protocol.ServerSession = field(default_factory=protocol.ServerSession)
    _due: list = field(default_factory=list)  # (time, order, message)
    _order: int = 0
    _silent_run: int = 0
    _answered: bool = False
    frames_sent: int = 0
    sent_at: float = math.nan

    def __post_init__(self) -> None:
        self.server.receive(self.session.header_message())

    # -- the clock and the gateway
    def clock(self) -> float:
        return self.now

    def _advance(self, until: float, *, stop_on_events: bool = False) -> None:
        while self._due and self._due[0][0] <= until:
            at, _order, message = heapq.heappop(self._due)
            self.now = max(self.now, at)
            events = self.session.receive(message, self.now)
            self.events.deliver(events)
            if stop_on_events and events:
                return
        self.now = max(self.now, until)

    def _gateway_gets(self, message: bytes | str) -> None:
        for event in self.server.receive(message):
            ends = isinstance(event, protocol.EndMarker)
            if isinstance(event, protocol.AudioReceived):
                self._silent_run = self._silent_run + 1 if not any(event.pcm) else 0
                ends = self._silent_run >= self.endpointer_frames
            if ends and not self._answered:
                self._answered = True
                self._answer()

    def _answer(self) -> None:
        if self.shape == "none":
            return
        if self.shape == "wav":
            buffer = io.BytesIO()
            soundfile.write(buffer, np.frombuffer(REPLY_AUDIO, dtype=np.int16), 22_050, format="WAV")
            messages = [buffer.getvalue()]
        else:
            messages = protocol.reply_messages(intent=self.intent, confidence=0.9, transcript="hello jarvis", slots={},
                                               reply_text="Hello!", audio_pcm=REPLY_AUDIO)
        for offset, message in enumerate(messages):
            self._order += 1
            heapq.heappush(self._due, (self.now + self.reply_delay_s + offset * 0.001, self._order, message))

    # -- the Transport protocol
    def stream(self, plan: StreamPlan, microphone: Microphone) -> StreamReport:
        silence = SILENCE
        frames = [*plan.frames, *([silence] * plan.min_silence_frames)]
        start = self.now
        sent = 0
        for index, frame in microphone.frames(plan, frames, silence, self.clock):
            self._advance(start + index * plan.frame_s)
            if self.send_fails_after is not None and self.frames_sent >= self.send_fails_after:
                raise ConnectionResetError("connection reset by peer")
            self._gateway_gets(bytes(frame))
            self.sent_at = self.now
            self.frames_sent += 1
            if index == plan.speech_end_frame:
                self.session.speech_ended(self.now)
            sent += 1
        return StreamReport(sent, 0.0)

    def send_text(self, text: str) -> None:
        self._gateway_gets(text)
        self.sent_at = self.now

    def last_sent_at(self) -> float:
        return self.sent_at

    def unsent_bytes(self) -> int | None:
        return None

    def wait(self, until: float) -> None:
        self._advance(until, stop_on_events=True)

    def abort(self, reason: str) -> None:
        self.events.deliver(self.session.connection_lost(self.now, None, reason))


def plan(speech_frames: int = 10, silence_frames: int = 0, pace: str = "realtime") -> StreamPlan:
    return StreamPlan(frames=[SPEECH_FRAME] * speech_frames, speech_end_frame=speech_frames - 1,
                      chunk_samples=guide.CHUNK_SAMPLES, pace=pace, min_silence_frames=silence_frames)


def link(**options) -> SimulatedLink:
    session_options = {k: options.pop(k) for k in ("reply_timeout_s",) if k in options}
    return SimulatedLink(protocol.ClientSession(**session_options), **options)


CONTEXT = TurnContext(utterance_id="u", expected_intent="GREETING")


def turn_on(transport: SimulatedLink, the_plan: StreamPlan, expectation: Expectation, **options):
    options.setdefault("clock", transport.clock)
    return run_turn(transport, the_plan, expectation, CONTEXT, **options)

def test_a_reference_turn_with_the_end_marker_is_timed_from_the_end_of_speech():
    transport = link(reply_delay_s=0.3)
    turn = turn_on(transport, plan(), Expectation(intent="GREETING"))
    assert turn.ok and turn.intent == "GREETING" and turn.intent_source == "metadata"
    assert turn.roundtrip_ms == pytest.approx(300.0 + 1.0, abs=0.01)  # the audio follows the metadata by 1 ms
    assert turn.record.chunks_sent == 10 and turn.ended_by == "reply_end"


@pytest.mark.parametrize("mic", ["closed", "open"])
def test_without_the_marker_a_silence_endpointer_answers_during_the_trailing_silence(mic):
    """The gateway ends the utterance after 8 silent frames (512 ms), well inside the 16 frames
    (1 s) of trailing silence: its reply belongs to the turn."""
    transport = link(reply_delay_s=0.2)
    turn = turn_on(transport, plan(silence_frames=16), Expectation(intent="GREETING"), send_marker=False,
                   open_mic=mic == "open")
    assert turn.ok, turn.record
    # end of speech at the last speech frame; the gateway heard 8 silent frames then answered 200 ms later
    assert turn.roundtrip_ms == pytest.approx(8 * FRAME_S * 1000 + 200 + 1, abs=0.5)
    if mic == "closed":  # the silence stopped when the reply's audio began
        assert turn.record.chunks_sent < 10 + 16
    else:  # the microphone stayed open until the reply was over
        assert turn.record.chunks_sent >= 10 + math.ceil((0.512 + 0.2 + 0.5) / FRAME_S)


def test_an_open_microphone_goes_on_past_the_trailing_silence_until_the_reply():
    transport = link(reply_delay_s=1.5, endpointer_frames=4)
    turn = turn_on(transport, plan(silence_frames=4), Expectation(intent="GREETING"), send_marker=False,
                   open_mic=True)
    assert turn.ok and turn.record.chunks_sent > 10 + 4 + math.floor(1.5 / FRAME_S)


def test_the_smartjarvis_shape_is_judged_by_ear():
    heard_calls = []

    def listen(samples, rate_hz, request_text):
        heard_calls.append((len(samples), rate_hz, request_text))
        return Heard("GREETING", "hello how can i help you", score=0.9, runner_up="TIME_NOW", runner_up_score=0.2,
                     expectations="smartjarvis (built in)")

    transport = link(shape="wav")
    turn = turn_on(transport, plan(silence_frames=16), Expectation(intent="GREETING", request_text="hello jarvis"),
                    send_marker=False, listen=listen)
    assert turn.ok and turn.intent_source == "audio" and turn.ended_by == "wav"
    assert heard_calls == [(8000, 22_050, "hello jarvis")]
    assert turn.record.reply_sample_rate_hz == 22_050 and turn.reply_transcript == "hello how can i help you"
    record = turn.record  # why the judge decided so, in the turns file
    assert (record.judge_score, record.judge_runner_up, record.judge_runner_up_score) == (0.9, "TIME_NOW", 0.2)
    assert record.judge_expectations == "smartjarvis (built in)"


def test_replies_with_metadata_are_not_heard_unless_cross_checked():
    calls = []
    transport = link()
    turn_on(transport, plan(), Expectation(intent="GREETING"), listen=lambda *a: calls.append(a),
             clock=transport.clock)
    assert calls == []


def test_a_gateway_that_never_answers_is_no_intent_at_the_deadline_counted_from_the_end_of_speech():
    transport = link(shape="none", reply_timeout_s=2.0)
    turn = turn_on(transport, plan(), Expectation(intent="GREETING"))
    assert turn.diagnosis == "no_intent" and turn.ended_by == "deadline"
    assert turn.record.turn_ms == pytest.approx(2000.0, abs=1)


def test_a_send_that_fails_ends_the_turn_as_recording_stopped():
    transport = link(send_fails_after=4)
    turn = turn_on(transport, plan(), Expectation(intent="GREETING"))
    assert turn.diagnosis == "recording_stopped" and "connection reset" in turn.detail
    assert transport.session.closed


def test_a_connection_that_drops_during_the_trailing_silence_ends_the_turn_once():
    """The gateway went away while the microphone sent silence (the stream itself did not fail:
    the session said stop): recording_stopped, and no mic left to close."""
    transport = link(shape="none")
    original = transport._gateway_gets

    def drop_after_speech(message):
        original(message)
        if transport.frames_sent == 12:
            transport.events.deliver(transport.session.connection_lost(transport.now, 1001, "going away"))

    transport._gateway_gets = drop_after_speech
    turn = turn_on(transport, plan(silence_frames=16), Expectation(intent="GREETING"), send_marker=False,
                   )
    assert turn.diagnosis == "recording_stopped" and turn.record.close_code == 1001
    assert transport.frames_sent == 13  # the microphone stopped with the connection (after the 13th frame)


def test_a_harness_bug_inside_the_turn_is_recorded_as_harness_error_and_raised():
    def broken_listen(*_args):
        raise ZeroDivisionError("a bug")

    transport = link(shape="wav")
    with pytest.raises(ZeroDivisionError):
        turn_on(transport, plan(silence_frames=16), Expectation(intent="GREETING"), send_marker=False,
                 listen=broken_listen)
    ended = transport.events.interrupted  # the turn was over when the bug struck: its record is left for the caller
    assert ended.record.failure == "harness_error" and "while judging: ZeroDivisionError" in ended.record.failure_detail

    def broken_check(turn):
        return 1 / 0

    transport = link()
    with pytest.raises(ZeroDivisionError):
        turn_on(transport, plan(), Expectation(intent="GREETING", check=broken_check))
    assert transport.events.interrupted.record.failure == "harness_error"
    # a bug mid-stream abandons the turn:
    transport = link()

    def failing_stream(plan, microphone):
        raise KeyError("bug in the sender")

    transport.stream = failing_stream
    with pytest.raises(KeyError):
        turn_on(transport, plan(), Expectation(intent="GREETING"))
    ended = transport.events.interrupted
    assert ended.record.failure == "harness_error" and "KeyError" in ended.record.failure_detail
    assert (transport.session.mic, transport.session.reply, transport.session.closed) == (Mic.OFF, Reply.IDLE, False)


def test_a_run_that_ends_while_the_reply_is_judged_keeps_the_turns_timings_as_run_stopped():
    """The judge hears a reply in another process, which can take seconds (its first reply
    waits for pocketsphinx to load): the run's end then stops the user inside ``listen``."""

    def listen_until_stopped(*_args):
        raise KeyboardInterrupt  # what gevent's GreenletExit is too: a BaseException, not an Exception

    transport = link(shape="wav")
    with pytest.raises(KeyboardInterrupt):
        turn_on(transport, plan(silence_frames=16), Expectation(intent="GREETING"), send_marker=False,
                 listen=listen_until_stopped)
    record = transport.events.interrupted.record
    assert (record.failure, record.failure_detail) == ("run_stopped", "the run ended while the reply was being judged")
    assert not record.success and record.roundtrip_ms > 0 and record.audible_ms > 0


def test_the_turn_value_supports_locusts_catch_response_idiom():
    transport = link()
    turn = turn_on(transport, plan(), Expectation(intent="GREETING"))
    turn.failure("the reply is too polite")
    assert not turn.ok and turn.diagnosis == "check_failed" and turn.detail == "the reply is too polite"
    turn.success()
    assert turn.ok and turn.diagnosis == ""


def test_the_record_carries_the_turns_context_and_is_frozen():
    transport = link()
    turn = turn_on(transport, plan(), Expectation(intent="GREETING"))
    assert (turn.record.utterance_id, turn.record.expected_intent) == ("u", "GREETING")
    with pytest.raises(AttributeError):
        turn.record.failure = "x"  # type: ignore[misc]


def test_the_roundtrip_splits_into_the_clients_tail_and_the_gateways_response():
    """With the end marker sent right after the speech, the client's tail is that instant and the
    gateway's response is its whole delay. Without a marker the microphone sends silence until the
    reply comes: the tail runs to the last frame before it, and the gateway's part is under a frame."""
    transport = link(reply_delay_s=0.3)
    turn = turn_on(transport, plan(), Expectation(intent="GREETING"))
    assert turn.record.client_tail_ms == pytest.approx(0.0, abs=0.01)
    assert turn.record.gateway_response_ms == pytest.approx(301.0, abs=0.01)
    transport = link(reply_delay_s=0.2)
    turn = turn_on(transport, plan(silence_frames=16), Expectation(intent="GREETING"), send_marker=False)
    assert 0 <= turn.record.gateway_response_ms < FRAME_S * 1000
    assert turn.record.client_tail_ms > 8 * FRAME_S * 1000  # the 512 ms the endpointer waited for, and more
    assert turn.record.client_tail_ms + turn.record.gateway_response_ms == pytest.approx(turn.roundtrip_ms, abs=0.01)


# ----------------------------------------------------------------------------- one reply's audio


def wav_bytes(samples: np.ndarray, rate_hz: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate_hz, format="WAV", subtype=subtype)
    return buffer.getvalue()


def tone(samples: int, rate_hz: int = 16_000, amplitude: float = 0.25) -> np.ndarray:
    return (amplitude * np.sin(np.arange(samples) / rate_hz * 2 * np.pi * 440)).astype(np.float32)


def pcm(at: float, data: bytes) -> ReplyAudio:
    return ReplyAudio(at, data, "pcm")


@pytest.mark.parametrize("rate_hz, subtype, channels", [
    (22_050, "PCM_16", 1), (16_000, "PCM_U8", 1), (48_000, "FLOAT", 2), (8_000, "PCM_24", 1),
])
def test_any_wav_rate_width_and_channels_is_decoded_to_mono_pcm16(rate_hz, subtype, channels):
    samples = tone(rate_hz // 2, rate_hz)
    if channels == 2:
        samples = np.stack([samples, samples], axis=1)
    audio = ReplyRecording(keep=True)
    audio.add(ReplyAudio(10.0, wav_bytes(samples, rate_hz, subtype), "wav", new_file=True))
    assert audio.samples == rate_hz // 2 and audio.sample_rate_hz == rate_hz and audio.first_at == 10.0
    assert audio.duration_ms == pytest.approx(500.0)
    assert audio.audio_bytes == 2 * (rate_hz // 2)  # PCM16 samples: the header is not audio
    kept = audio.kept_samples()
    assert kept.dtype == np.int16 and len(kept) == rate_hz // 2
    assert abs(int(kept.max()) - 8192) < 300  # 0.25 of full scale, whatever the sample width


def test_digital_silence_is_silent_and_never_audible():
    audio = ReplyRecording()
    audio.add(pcm(1.0, np.zeros(16_000, dtype=np.int16).tobytes()))
    assert audio.silent and math.isnan(audio.audible_at)


def test_the_playback_timeline_places_the_first_audible_sample():
    audio = ReplyRecording()
    silence = np.zeros(1024, dtype=np.int16).tobytes()  # 64 ms
    loud = (np.full(1024, 4000, dtype=np.int16)).tobytes()
    audio.add(pcm(5.0, silence))  # plays 5.000-5.064
    audio.add(pcm(5.01, silence))  # queued: 5.064-5.128
    audio.add(pcm(5.3, loud))  # late: the audio ran out at 5.128; plays from 5.3
    assert audio.playback_stalls == 1 and audio.messages == 3
    assert audio.audible_at == pytest.approx(5.3)
    assert audio.first_at == 5.0 and audio.last_at == 5.3
