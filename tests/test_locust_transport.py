"""voiceharness.locust.transport: the pacer sends every stream's pre-framed frames on time, in
order, and one stream's trouble stays its own.

The module runs in a process that gevent patched first (tests/gevent_process.py), as a Locust
worker is. Each user's connection writes to one end of a socket pair whose far end the test
reads and parses the frames back from.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import gevent
import pytest

from voiceharness import framing, protocol
from voiceharness.connection import ConnectOptions
from voiceharness.locust.transport import Pacer, VoiceConnection
from voiceharness.protocol import Abandon, ClientProtocolMisuse
from voiceharness.settings import Settings
from voiceharness.turn import Microphone, StreamPlan, TurnMeter

pytestmark = pytest.mark.gevent


class Paired:
    """A user's VoiceConnection whose socket is one end of a socket pair; ``peer`` is the other."""

    def __init__(self, *, sndbuf: int | None = None, open_mic: bool = False, **session_options) -> None:
        mine, self.peer = socket.socketpair()
        if sndbuf:
            mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            self.peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
        self.session = protocol.ClientSession(**session_options)
        self.voice = VoiceConnection(Settings(host="127.0.0.1", port=9), ConnectOptions(), self.session)
        self.voice.connection.sock = mine
        self.meter = TurnMeter()
        self.voice.events.meter = self.meter
        self.microphone = Microphone(self.session, self.meter, self.voice.events.deliver, open_mic=open_mic)
        self.received = bytearray()

    def drain(self, pause_s: float = 0.0) -> None:
        gevent.sleep(pause_s)
        while True:
            data = self.peer.recv(1 << 20)
            if not data:
                return
            self.received += data

    def payloads(self) -> list[bytes]:
        out, data = [], bytes(self.received)
        while data:
            _opcode, _fin, length, key, header = framing.parse_frame_header(data)
            out.append(framing.mask(data[header : header + length], key))
            data = data[header + length :]
        return out

    def turn(self, pacer: Pacer, payloads: list[bytes], frame_s: float):
        """One turn's stream: the payloads are pre-framed by the pacer (keyed by the list's identity)."""
        self.session.begin_turn(time.monotonic())
        plan = StreamPlan(frames=payloads, speech_end_frame=len(payloads) - 1, chunk_samples=int(frame_s * 16000))
        return pacer.stream(self.voice, plan, self.microphone)


@pytest.fixture(autouse=True)
def _fresh_loop_clock():
    # The loop's clock was last read before the imports: timers armed now would fire early by that much.
    gevent.get_hub().loop.update_now()


def test_every_stream_gets_its_frames_in_order_on_time():
    pacer = Pacer()
    users = [Paired() for _ in range(40)]
    for user in users:
        gevent.spawn(user.drain)
    payloads = {i: [bytes([i, k]) * 1024 for k in range(12)] for i in range(40)}
    turns = gevent.joinall([gevent.spawn(user.turn, pacer, payloads[i], 0.02) for i, user in enumerate(users)],
                           raise_error=True)
    gevent.sleep(0.2)
    assert all(user.payloads() == payloads[i] for i, user in enumerate(users))  # every frame, in order
    assert all(user.session.mic is protocol.Mic.TRAILING for user in users)  # each said when its speech ended
    assert {t.value.chunks_sent for t in turns} == {12} and pacer.stats.summary()["frames"] == 40 * 12
    assert all(user.voice.last_sent_at() >= user.session.end_of_speech_at for user in users)
    # On time: the 40 streams are paced together, not one after another (that would make the last
    # ones seconds late). How late is a speed figure for bench/ (the capacity benchmark); this
    # bound is only there to catch streams served in turn, and a loaded CI machine stays far below it.
    assert max(t.value.send_lateness_max_ms for t in turns) < 1000
    assert pacer.slow_streams == 0


def test_a_full_socket_leaves_the_pacer_without_stalling_the_others():
    pacer = Pacer()
    stuck = Paired(sndbuf=4096)
    others = [Paired() for _ in range(10)]
    gevent.spawn(stuck.drain, 3.0)  # its reader pauses: its socket fills up
    for user in others:
        gevent.spawn(user.drain)
    big = [bytes([k]) * 20000 for k in range(20)]
    small = [bytes([k]) * 2048 for k in range(20)]
    jobs = [gevent.spawn(stuck.turn, pacer, big, 0.01)]
    jobs += [gevent.spawn(user.turn, pacer, small, 0.01) for user in others]
    gevent.joinall(jobs, raise_error=True)
    gevent.sleep(0.3)
    assert stuck.payloads() == big and all(user.payloads() == small for user in others)
    assert pacer.slow_streams == 1
    # Not held up by the stuck stream's 3 s pause: held up, they would be about 3 s late. The
    # bound is that, with room for a loaded CI machine; the lateness itself is bench/'s figure.
    assert max(job.value.send_lateness_max_ms for job in jobs[1:]) < 1500


def test_a_closed_connection_ends_its_stream_with_connection_error():
    pacer = Pacer()
    user = Paired()
    gevent.spawn(user.drain)
    gevent.spawn_later(0.05, lambda: user.voice.connection.lost(1006, "gone"))
    with pytest.raises(ConnectionError, match="closed"):
        user.turn(pacer, [b"ab" * 1024] * 20, 0.02)
    gevent.sleep(0.1)
    assert 0 < len(user.payloads()) < 20


def test_a_stream_whose_user_was_killed_is_dropped_and_a_misused_session_ends_only_its_stream():
    pacer = Pacer()
    a, b, c = Paired(), Paired(), Paired()
    for user in (a, b, c):
        gevent.spawn(user.drain)
    payloads = [b"ab" * 1024] * 30
    killed = gevent.spawn(a.turn, pacer, payloads, 0.01)
    broken = gevent.spawn(b.turn, pacer, payloads, 0.01)
    fine = gevent.spawn(c.turn, pacer, payloads, 0.01)
    gevent.sleep(0.05)
    killed.kill()  # Locust stops users by killing their greenlets
    b.session.abandon_turn(time.monotonic(), Abandon.RUN_STOPPED, "stopped")  # speech_ended now raises: a harness bug
    gevent.joinall([broken, fine])
    gevent.sleep(0.1)
    assert fine.value.chunks_sent == 30
    assert isinstance(broken.exception, ClientProtocolMisuse)  # raised in its own user's greenlet, not the pacer's
    assert not pacer._greenlet.dead
    assert len(a.payloads()) < 30


def test_an_open_microphone_streams_silence_until_the_reply_has_played():
    pacer = Pacer()
    user = Paired(open_mic=True, reply_timeout_s=5.0)
    gevent.spawn(user.drain)

    def gateway():  # answers 200 ms into the trailing silence with 300 ms of audio and reply_end
        gevent.sleep(0.1 * 5 + 0.2)
        now = time.monotonic()
        for message in protocol.reply_messages(intent="GREETING", confidence=1, transcript="", slots={},
                                               reply_text="", audio_pcm=b"\x10\x00" * 4800):
            user.voice.events.deliver(user.session.receive(message, now))

    gevent.spawn(gateway)
    report = user.turn(pacer, [b"ab" * 800] * 5, 0.1)  # 5 frames of 100 ms, no minimum silence
    user.voice.events.deliver(user.session.close_mic(time.monotonic()))
    # 5 speech frames, then silence from 0.5 s until the reply (at 0.7 s, 300 ms long) has played: ~1.0 s
    assert 9 <= report.chunks_sent <= 12 and len(user.payloads()) == report.chunks_sent
    assert user.meter.ended is not None and user.meter.ended.ended_by == "reply_end"


def _answer(user: Paired, after_s: float, *, reply_end: bool = True) -> None:
    """The gateway's side: a reply (metadata, 300 ms of audio, reply_end unless told not) ``after_s``
    after the stream's end marker arrived at the far end of the socket pair."""
    marker = protocol.end_marker_message().encode()
    while marker not in user.payloads():
        gevent.sleep(0.005)
    gevent.sleep(after_s)
    now = time.monotonic()
    messages = protocol.reply_messages(intent="GREETING", confidence=1, transcript="", slots={}, reply_text="",
                                       audio_pcm=b"\x10\x00" * 4800)
    for message in messages if reply_end else messages[:-1]:
        user.voice.events.deliver(user.session.receive(message, now))


def _run_turn(user: Paired, payloads: list[bytes]):
    from voiceharness.judge import Expectation
    from voiceharness.turn import run_turn
    from voiceharness.turns import TurnContext

    plan = StreamPlan(frames=payloads, speech_end_frame=len(payloads) - 1, chunk_samples=320)
    return run_turn(user.voice, plan, Expectation(intent="GREETING"), TurnContext(expected_intent="GREETING"))


def test_the_pacer_sends_the_end_marker_and_closes_the_microphone_where_the_stream_ends():
    """With close_at_stream_end (run_turn's microphone) the pacer sends the marker after the last
    frame and closes the microphone itself; the user's greenlet sleeps on in Pacer.stream until
    its turn is over — it is not woken in between to do it."""
    pacer = Pacer()
    user = Paired()
    gevent.spawn(user.drain)
    user.microphone = Microphone(user.session, user.meter, user.voice.events.deliver, open_mic=False,
                                 end_marker=protocol.end_marker_message(), close_at_stream_end=True)
    gevent.spawn(_answer, user, 0.1)
    payloads = [b"ab" * 320] * 5
    report = user.turn(pacer, payloads, 0.02)
    assert user.microphone.closed and report.chunks_sent == 5
    assert user.payloads() == [*payloads, protocol.end_marker_message().encode()]  # the marker last, once
    # Woken once, when the reply was over: the turn had ended when Pacer.stream returned.
    assert user.meter.ended is not None and user.meter.ended.ended_by == "reply_end" and not user.session.in_turn
    assert user.voice.last_sent_at() >= user.session.end_of_speech_at
    assert pacer.active == 0 and user.voice.parked is None


def test_a_turn_through_the_pacers_close_ends_in_exactly_one_record():
    """run_turn on a VoiceConnection: the pacer closes the microphone; the turn is judged and its
    record built once, the marker sent once."""
    user = Paired()
    gevent.spawn(user.drain)
    gevent.spawn(_answer, user, 0.05)
    turn = _run_turn(user, [b"ab" * 320] * 5)
    assert turn.ok and turn.ended_by == "reply_end" and turn.record.chunks_sent == 5
    assert turn.record.chunks_received >= 1 and turn.record.roundtrip_ms > 0
    assert user.payloads().count(protocol.end_marker_message().encode()) == 1
    assert user.voice.parked is None and user.voice.pacer.active == 0


def test_a_parked_turn_wakes_at_its_deadline_and_ends_as_one_classified_failure():
    """No reply: the user's greenlet, asleep after the pacer closed its microphone, wakes at the
    session's reply deadline (a timer, not a poll) and the turn ends as no_intent."""
    user = Paired(reply_timeout_s=0.3)
    gevent.spawn(user.drain)
    turn = _run_turn(user, [b"ab" * 320] * 3)
    assert not turn.ok and turn.diagnosis == "no_intent" and turn.ended_by == "deadline"
    assert turn.record.turn_ms >= 300  # not before its deadline
    assert user.voice.parked is None


def test_a_nearer_deadline_wakes_a_parked_turn():
    """Reply audio without reply_end: the reply's gap (0.2 s) ends the turn, not the 30 s deadline
    the user's greenlet was parked for — an event that brings a deadline nearer wakes it."""
    user = Paired(reply_timeout_s=30.0, reply_gap_s=0.2)
    gevent.spawn(user.drain)
    gevent.spawn(_answer, user, 0.05, reply_end=False)
    turn = _run_turn(user, [b"ab" * 320] * 3)
    assert turn.ended_by == "gap"
    assert turn.record.turn_ms < 10_000  # at the gap, not at the 30 s deadline (a loaded machine stays far below)


def test_a_turn_stopped_after_its_reply_but_before_its_greenlet_woke_keeps_what_it_sent():
    """The run stops the user (Locust kills its greenlet) just as its parked turn ends: the kill
    reaches the greenlet before the wake-up does. The turn's one record (left for the caller in
    events.interrupted) still says what was sent — the pacer's report is on the microphone."""
    user = Paired(reply_timeout_s=30.0)
    gevent.spawn(user.drain)
    payloads = [b"ab" * 320] * 4
    job = gevent.spawn(_run_turn, user, payloads)
    while user.voice.parked is None:
        gevent.sleep(0.01)
    job.kill(block=False)  # queued first: it reaches the greenlet before the wake-up below
    now = time.monotonic()
    for message in protocol.reply_messages(intent="GREETING", confidence=1, transcript="", slots={}, reply_text="",
                                           audio_pcm=b"\x10\x00" * 4800):
        user.voice.events.deliver(user.session.receive(message, now))
    job.join()
    record = user.voice.events.interrupted.record
    assert record.chunks_sent == len(payloads) and record.success and record.roundtrip_ms > 0
    assert record.send_lateness_max_ms == record.send_lateness_max_ms  # measured, not NaN


def test_a_user_killed_while_parked_leaves_no_timer_nor_stream_behind():
    pacer = Pacer()
    user = Paired(reply_timeout_s=30.0)
    gevent.spawn(user.drain)
    user.microphone = Microphone(user.session, user.meter, user.voice.events.deliver, open_mic=False,
                                 end_marker=None, close_at_stream_end=True)
    job = gevent.spawn(user.turn, pacer, [b"ab" * 320] * 3, 0.02)
    while user.voice.parked is None:
        gevent.sleep(0.01)
    parked = user.voice.parked
    assert user.microphone.closed and pacer.active == 0
    job.kill()
    assert user.voice.parked is None and parked.timer is None and parked.done.ready()


def test_importing_the_transport_the_options_or_the_package_does_not_import_locust():
    """Locust monkey-patches the whole process it is imported in; a tool that imports the transport
    or resolves options must not get that, only a locustfile that imports the public API (which
    also registers the runtime's two listeners)."""
    script = (
        "import sys\n"
        "import voiceharness.locust, voiceharness.locust.transport, voiceharness.locust.collector\n"
        "import voiceharness.locust.options\n"
        "voiceharness.locust.options.markdown_table()  # docs/options.md's table, as the docs test makes it\n"
        "assert 'locust' not in sys.modules, 'locust imported'\n"
        "from gevent import monkey\n"
        "assert not monkey.is_module_patched('socket'), 'socket patched'\n"
        "from voiceharness.locust import VoiceUser\n"
        "assert 'locust' in sys.modules and monkey.is_module_patched('socket')\n"
        "assert 'voiceharness.locust.metrics' in sys.modules and 'voiceharness.locust.runtime' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_shaped_link_writes_every_frame_in_order_and_never_before_the_link_delivers_it():
    """200 kbit/s and 50 ms one way, no jitter: frame k reaches the peer no earlier than the token
    bucket lets it leave (from its hand-over at its real-time due time) plus the delay, the bytes
    intact and in order; a ping crosses both directions (at least twice the delay)."""
    from voiceharness.network import NetworkProfile

    profile = NetworkProfile("test", uplink_kbps=200, one_way_delay_ms=50, burst_bytes=4096)
    mine, peer = socket.socketpair()
    session = protocol.ClientSession()
    pings: list[float] = []
    voice = VoiceConnection(Settings(host="127.0.0.1", port=9), ConnectOptions(), session,
                            lambda e: pings.append(e.ping_ms) if isinstance(e, protocol.PingMeasured) else None,
                            pacer=Pacer(), network=profile, network_seed="t")
    voice.connection.sock = mine
    voice.connection.start_link()
    meter = TurnMeter()
    voice.events.meter = meter
    arrivals: list[tuple[float, int]] = []
    received = bytearray()

    def drain() -> None:
        while True:
            data = peer.recv(1 << 20)
            if not data:
                return
            received.extend(data)
            arrivals.append((time.monotonic(), len(received)))

    drainer = gevent.spawn(drain)
    payloads = [bytes([k]) * 2048 for k in range(12)]
    session.begin_turn(time.monotonic())
    plan = StreamPlan(frames=payloads, speech_end_frame=len(payloads) - 1, chunk_samples=1024)
    start = time.monotonic()
    report = voice.stream(plan, Microphone(session, meter, voice.events.deliver, open_mic=False))
    gevent.sleep(1.5)  # the backlog drains (12 frames at 25,000 B/s: under 1 s)
    wire, rate, frame_s = 2048 + 8, 25_000, 0.064
    for k in range(12):
        handed_at = start + k * frame_s
        leaves_at = max(handed_at, start + ((k + 1) * wire - 4096) / rate)
        arrived_at = next(at for at, total in arrivals if total >= (k + 1) * wire)
        assert arrived_at >= leaves_at + 0.050 - 0.002, k  # never early (2 ms: the timer's resolution)
    parsed, data = [], bytes(received)
    while data:
        _opcode, _fin, length, key, header = framing.parse_frame_header(data)
        parsed.append(framing.mask(data[header : header + length], key))
        data = data[header + length :]
    assert parsed == payloads
    # the backlog peaked above a frame (hand-overs late by the machine only give the bucket more time)
    assert 64 <= report.uplink_backlog_max_ms <= 12 * 64
    # a ping: through the uplink, answered by the peer at once, back through the downlink
    drainer.kill()

    def answer_ping() -> None:
        data = peer.recv(1 << 16)
        _opcode, _fin, length, key, header = framing.parse_frame_header(data)
        payload = framing.mask(data[header : header + length], key)
        peer.sendall(bytes([0x8A, len(payload)]) + payload)  # the pong, unmasked as a server sends it

    gevent.spawn(answer_ping)
    reader = gevent.spawn(voice.connection.read_forever, voice.events.deliver)
    voice.connection.ping(session.ping_payload(time.monotonic()))
    gevent.sleep(0.3)
    assert len(pings) == 1 and pings[0] >= 2 * 50 - 2, pings  # unshaped, a socket pair answers in microseconds
    reader.kill()
    voice.events.deliver(voice.connection.lost(None, "test over"))


def _server_frame(message: bytes | str) -> bytes:
    """One unmasked frame as a gateway sends it."""
    payload, opcode = (message.encode(), 0x81) if isinstance(message, str) else (message, 0x82)
    if len(payload) < 126:
        return bytes([opcode, len(payload)]) + payload
    return bytes([opcode, 126]) + len(payload).to_bytes(2, "big") + payload


def test_a_shaped_downlink_delivers_a_burst_of_reply_messages_one_by_one_at_the_links_pace():
    """A gateway that writes a whole reply at once (20 messages, 40 kB) to a 384 kbit/s downlink:
    the messages reach the session as the link carries them — the first within a segment's time,
    the last no earlier than the burst's bytes at the rate — not all at once when the last byte came."""
    from voiceharness.network import NetworkProfile

    profile = NetworkProfile("test", downlink_kbps=384, one_way_delay_ms=20, burst_bytes=4096)
    mine, peer = socket.socketpair()
    session = protocol.ClientSession(reply_timeout_s=10.0)
    seen: list[tuple[float, str]] = []
    voice = VoiceConnection(Settings(host="127.0.0.1", port=9), ConnectOptions(), session,
                            lambda e: seen.append((time.monotonic(), type(e).__name__)), pacer=Pacer(),
                            network=profile, network_seed="t")
    voice.connection.sock = mine
    voice.connection.start_link()
    voice.events.meter = TurnMeter()
    reader = gevent.spawn(voice.connection.read_forever, voice.events.deliver)
    session.begin_turn(time.monotonic())
    session.speech_ended(time.monotonic())
    burst = b"".join(_server_frame(m) for m in protocol.reply_messages(
        intent="GREETING", confidence=1, transcript="", slots={}, reply_text="", audio_pcm=b"\x10\x00" * 20_000,
        chunk_bytes=2000))
    sent_at = time.monotonic()
    peer.sendall(burst)
    gevent.sleep(len(burst) / 48_000 + 0.5)
    audio = [at - sent_at for at, kind in seen if kind == "ReplyAudio"]
    assert len(audio) == 20, seen
    assert audio[0] < 0.020 + 3 * 1448 / 48_000 + 0.05  # the first message: a few segments in, not the burst's end
    assert audio[-1] >= 0.020 + (len(burst) - 4096) / 48_000 - 0.002  # the last: never before the link carried it
    assert len(set(audio)) >= 10  # delivered progressively
    reader.kill()
    voice.events.deliver(voice.connection.lost(None, "test over"))
