"""The reference gateway under bad input: hypothesis on the header parser, the server session and the live gateway.

In memory, :func:`parse_header` and :class:`ServerSession` take any bytes or text and either
accept it or return a :class:`ProtocolError` with 1008 (header) or 1007 (payload), never
another exception. Over a real socket, a gateway (``--fast-sink``) is sent
hypothesis-generated first frames, frame sequences after a valid header, and hand-built raw
frames (reserved bits, unknown opcodes, unmasked, fragmented control frames, bad close
frames); each connection must end with the close code the protocol module (the oracle) or
RFC 6455 predicts, and afterwards the gateway answers ``/healthz`` and has logged no
traceback. Examples are bounded (``LIVE_EXAMPLES``) so the module runs in seconds.
"""

from __future__ import annotations

import json
import os
import struct
import urllib.request

import pytest
import websocket
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from voiceharness.errors import ProtocolViolation
from voiceharness.protocol import (
    AudioReceived,
    EndMarker,
    Header,
    HeaderAccepted,
    ProtocolError,
    ServerSession,
    parse_header,
)

LIVE_EXAMPLES = 40
MAX_MESSAGE_BYTES = 65536  # the live gateway's --max-message-bytes
VALID_HEADER = json.dumps({"sessionId": "fuzz", "correlationId": "c-1", "sampleRate": 16000, "protocolVersion": 1})

# -- strategies

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
header_like = st.fixed_dictionaries(
    {},
    optional={
        "sessionId": json_values | st.text(max_size=70),
        "correlationId": json_values | st.text(max_size=70),
        "sampleRate": st.sampled_from([16000, 8000, 16000.0, True, "16000", 0, -1]) | json_values,
        "protocolVersion": st.sampled_from([1, 2, True, "1", 1.5]) | json_values,
        "type": st.sampled_from(["end", "start"]),
    },
)
header_text = header_like.map(json.dumps)
deep_nesting = st.integers(min_value=1, max_value=200_000).map(lambda n: "[" * n)
any_text = st.text(max_size=300) | header_text | deep_nesting
any_bytes = st.binary(max_size=300) | any_text.map(lambda t: t.encode("utf-8", "surrogatepass"))
any_message = any_text | any_bytes


# -- in memory


@given(any_message)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@example("[" * 100_000)  # deeper than json's recursion limit: once a RecursionError escaped
@example(b'{"sessionId": "a", "correlationId": "b", "sampleRate": 16000}')
def test_parse_header_accepts_or_raises_a_1008_violation_and_nothing_else(message):
    try:
        header = parse_header(message)
    except ProtocolViolation as violation:
        assert violation.close_code == 1008
        return
    assert isinstance(header, Header)
    assert header.session_id and isinstance(header.session_id, str)
    assert header.sample_rate_hz == 16000


@given(st.text(min_size=1, max_size=64), st.text(min_size=1, max_size=64), st.booleans())
def test_a_well_formed_header_is_always_accepted_as_text_or_binary(session_id, correlation_id, as_binary):
    text = json.dumps({"sessionId": session_id, "correlationId": correlation_id, "sampleRate": 16000})
    message = text.encode("utf-8", "surrogatepass") if as_binary else text
    (event,) = ServerSession().receive(message)
    assert isinstance(event, HeaderAccepted)
    assert (event.header.session_id, event.header.correlation_id) == (session_id, correlation_id)


@given(st.lists(any_message, min_size=1, max_size=8), st.booleans())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_server_session_returns_known_events_and_only_1007_or_1008_errors(messages, valid_first):
    if valid_first:
        messages = [VALID_HEADER, *messages]
    session = ServerSession()
    closed = False
    for index, message in enumerate(messages):
        events = session.receive(message)
        if closed:
            assert events == [], "a closed session says nothing more"
            continue
        assert len(events) <= 1
        for event in events:
            assert isinstance(event, HeaderAccepted | AudioReceived | EndMarker | ProtocolError)
            if index == 0:
                assert isinstance(event, HeaderAccepted | ProtocolError)
            if isinstance(event, ProtocolError):
                assert event.close_code == (1008 if index == 0 else 1007)
                assert event.reason
                closed = True
            if isinstance(event, AudioReceived):
                assert event.pcm == bytes(message) and len(event.pcm) % 2 == 0
        if index == 0:
            assert events, "the first message is either accepted or refused"


# -- over a real socket


def _expected_close(messages: list[tuple[bool, bytes | str]]) -> int | None:
    """What the gateway must close with, from the protocol module and RFC 6455; None: stays open."""
    session = ServerSession()
    for is_text, payload in messages:
        size = len(payload.encode("utf-8") if isinstance(payload, str) else payload)
        if size > MAX_MESSAGE_BYTES:
            return 1009
        if is_text:
            try:
                message: bytes | str = payload.decode("utf-8") if isinstance(payload, bytes) else payload
            except UnicodeDecodeError:
                return 1007  # websockets refuses invalid UTF-8 in a text frame before our code sees it
        else:
            message = payload if isinstance(payload, bytes) else payload.encode("utf-8")
        for event in session.receive(message):
            if isinstance(event, ProtocolError):
                return event.close_code
    return None


def _through_first_close(messages: list[tuple[bool, bytes | str]]) -> list[tuple[bool, bytes | str]]:
    """``messages`` up to and including the first one the model says closes the connection.

    What follows that message would race with the close: websockets refuses an oversized frame
    (1009) as it reads it, while our handler may not yet have read the earlier bad message
    (1007), so either code could come first. The fuzz checks the first offence, deterministically.
    """
    for end in range(1, len(messages) + 1):
        if _expected_close(messages[:end]) is not None:
            return messages[:end]
    return messages


def _close_code(ws: websocket.WebSocket) -> int | None:
    """Read until the gateway's close frame (replies and pongs skipped); its code, or None if it dropped us."""
    while True:
        try:
            opcode, frame = ws.recv_data_frame(True)
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return None
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else 1005


def _run_live(gateway, messages: list[tuple[bool, bytes | str]], raw: bytes = b"", *, close: bool = True) -> int | None:
    """Send ``messages`` (then ``raw`` bytes, or our close if ``close``); the gateway's close code.

    Our close is only sent when the gateway is expected to stay open: websockets checks a text
    frame's UTF-8 when the handler reads it, so a close sent right behind a bad frame would be
    answered (1000) first.
    """
    ws = websocket.create_connection(f"{gateway.url}/ws/audio", timeout=10, enable_multithread=True)
    try:
        for is_text, payload in messages:
            if is_text and isinstance(payload, bytes):
                ws.send_frame(websocket.ABNF.create_frame(payload, websocket.ABNF.OPCODE_TEXT))
            elif is_text:
                ws.send(payload)
            else:
                ws.send_binary(payload if isinstance(payload, bytes) else payload.encode("utf-8"))
        if raw:
            ws.sock.sendall(raw)
        elif close:
            # Still open after our frames? Then it must answer our close with 1000 (the last
            # frame may also have made it close first: either way its code is read).
            try:
                ws.send_close(1000, b"")
            except (websocket.WebSocketConnectionClosedException, OSError):
                pass
        return _close_code(ws)
    finally:
        ws.shutdown()


def _assert_healthy(gateway) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/healthz", timeout=5) as response:
        assert response.status == 200
    log = gateway.log_text()
    for marker in ("Traceback", "connection handler failed", "assembler_failed", "level=error"):
        assert marker not in log, f"{marker!r} in the gateway log:\n{log[-3000:]}"


@pytest.fixture
def fast_gateway(gateway_factory):
    return gateway_factory("--fast-sink", "--max-message-bytes", str(MAX_MESSAGE_BYTES))


first_frames = st.tuples(st.booleans(), any_text) | st.tuples(st.booleans(), st.binary(max_size=300))


def test_live_first_frames_close_with_the_code_the_protocol_module_predicts(fast_gateway):
    @given(first_frames)
    @settings(max_examples=LIVE_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @example((True, "[" * 60_000))  # RecursionError in the parser: was a traceback and 1011
    @example((True, "[" * 100_000))  # over --max-message-bytes: 1009
    @example((False, b"\xff\xfe{"))
    @example((True, b"\xc3\x28"))  # invalid UTF-8 in a text frame
    @example((True, VALID_HEADER))
    def check(frame):
        expected = _expected_close([frame])
        assert _run_live(fast_gateway, [frame], close=expected is None) == (1000 if expected is None else expected)

    check()
    _assert_healthy(fast_gateway)


after_header = st.lists(
    st.tuples(st.just(False), st.binary(max_size=4096))
    | st.tuples(st.just(False), st.binary(max_size=64).map(lambda b: b'{"type":"end"}' + b))
    | st.tuples(st.just(True), any_text | st.just('{"type":"end"}')),
    max_size=10,
)


def test_live_frame_sequences_after_a_header_close_as_predicted(fast_gateway):
    @given(after_header)
    @settings(max_examples=LIVE_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @example([(False, b"\x00" * 2047)])  # odd byte count: 1007
    @example([(False, b"\x10\x20" * 1024), (True, '{"type":"end"}'), (False, b"\x00\x10" * 1024)])
    @example([(False, b"\x00" * 5), (True, "[" * 68_818)])  # 1007, then an oversized frame: was 1009 or 1007
    def check(frames):
        messages = _through_first_close([(True, VALID_HEADER), *frames])
        expected = _expected_close(messages)
        assert _run_live(fast_gateway, messages, close=expected is None) == (1000 if expected is None else expected)

    check()
    _assert_healthy(fast_gateway)


def _raw_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True,
               length: int | None = None) -> bytes:
    """A client frame built by hand, so it can break any rule of RFC 6455 section 5.2."""
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload) if length is None else length
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = struct.pack("!BB", first, mask_bit | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _rfc_expected(opcode: int, payload: bytes, fin: bool, rsv: int, masked: bool) -> int | None:
    """The close code RFC 6455 (as websockets implements it) gives one frame after a valid header."""
    if rsv or not masked or opcode in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15):
        return 1002
    if opcode >= 8 and (not fin or len(payload) > 125):
        return 1002
    if opcode == 0:
        return 1002  # a continuation with no message to continue
    if opcode == 8:
        if len(payload) == 1:
            return 1002
        if len(payload) >= 2:
            # websockets' Close.parse decodes the reason before it checks the code, so a close
            # with an invalid code AND a reason that is not UTF-8 is refused as 1007, not 1002.
            try:
                payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                return 1007
            code = struct.unpack("!H", payload[:2])[0]
            if not (code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
                    or 3000 <= code < 5000):
                return 1002
            return code  # a valid close is echoed with its own code
        return 1005  # an empty close is answered with an empty close
    if not fin:
        return None  # the start of a fragmented message: the gateway waits for the rest
    if opcode in (9, 10):
        return None  # ping (answered) or pong
    return _expected_close([(True, VALID_HEADER), (opcode == 1, payload)])


raw_frames = st.tuples(
    st.integers(0, 15), st.binary(max_size=200), st.booleans(), st.integers(0, 7), st.booleans()
)


def test_live_raw_frames_that_break_rfc_6455_close_with_1002_or_1007(fast_gateway):
    @given(raw_frames)
    @settings(max_examples=LIVE_EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @example((1, b"ok", True, 4, True))  # RSV1 without an extension
    @example((2, b"\x00\x00", True, 0, False))  # unmasked client frame
    @example((9, b"x" * 126, True, 0, True))  # ping over 125 bytes
    @example((8, b"\x03", True, 0, True))  # close with a 1-byte payload
    @example((8, struct.pack("!H", 999), True, 0, True))  # close code 999
    @example((8, struct.pack("!H", 1000) + b"\xff", True, 0, True))  # close reason not UTF-8
    @example((8, b"\x00\x00\x80", True, 0, True))  # invalid code 0 AND a reason not UTF-8: 1007
    @example((1, b"\xed\xa0\x80", True, 0, True))  # a UTF-16 surrogate in UTF-8
    @example((1, b"\x80", False, 0, True))  # fragmented, not UTF-8: 1007 (was raced by our close: 1000)
    def check(frame):
        opcode, payload, fin, rsv, masked = frame
        expected = _rfc_expected(opcode, payload, fin, rsv, masked)
        raw = _raw_frame(opcode, payload, fin=fin, rsv=rsv, masked=masked)
        if expected is None and not fin:  # the start of a message: finish it
            raw += _raw_frame(0, b"", fin=True)
            expected = _expected_close([(True, VALID_HEADER), (opcode == 1, payload)])
        if expected is None:  # still open: our close is echoed. Not sent behind a message the
            # gateway will refuse, which it only does when it reads it: the close could win (1000).
            raw += _raw_frame(8, struct.pack("!H", 1000))
            expected = 1000
        assert _run_live(fast_gateway, [(True, VALID_HEADER)], raw=raw) == expected

    check()
    _assert_healthy(fast_gateway)


def test_a_message_over_max_message_bytes_is_closed_with_1009_and_the_gateway_stays_healthy(fast_gateway):
    header_only = _raw_frame(2, b"", length=1 << 20)  # announces 1 MiB, sends nothing more
    assert _run_live(fast_gateway, [(True, VALID_HEADER)], raw=header_only) == 1009
    assert _run_live(fast_gateway, [(False, b"\x00" * 70_000)], close=False) == 1009  # as the first frame
    _assert_healthy(fast_gateway)
