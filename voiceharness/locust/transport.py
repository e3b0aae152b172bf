"""The Locust client's transport: one simulated user's WebSocket, websocket-client under gevent.

All protocol decisions live in :class:`voiceharness.protocol.ClientSession` and the turn's
course in :func:`voiceharness.turn.run_turn`; this module only moves frames between the
socket and the session. Real-time audio leaves through the process-wide pacer
(:mod:`voiceharness.locust.pacer`); two helper greenlets per connection do the rest: a *reader* that feeds every received frame to the session (answering server
pings on the way) and a *pinger* that measures ping → pong latency and notices a dead link
(nothing received, pongs included, for twice the ping interval) without waiting for TCP.

Connection failures are raised as :class:`~voiceharness.errors.ConnectionFailed` with a
diagnosis code; nothing here prints a traceback for a fault the guide describes.
"""

from __future__ import annotations

import logging
import math
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import gevent
import gevent.event
import websocket

from voiceharness import diagnoses, protocol, uplink
from voiceharness.errors import ConnectionFailed
from voiceharness.settings import Settings
from voiceharness.turn import StreamPlan, StreamReport, TransportEvents, microphone

log = logging.getLogger("voice.transport")

# The harness caps what one message may hold (websocket-client has no cap of its own).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# One read from the socket takes up to this much; the frame reader is served from it.
READ_BYTES = 65536


class MessageTooBig(websocket.WebSocketException):
    """A frame header announced more than the message cap; its payload was not read."""


class _CappedFrameBuffer(websocket.frame_buffer):
    """websocket-client's frame reader, refusing a message whose announced length is over the cap,
    fed from one buffered read of the socket (:class:`_BufferedRecv`).

    websocket-client reads a whole frame (and joins fragments) before handing it over, so a
    check after ``recv_data_frame`` comes after the memory is spent. The length sits in the
    frame header, read before the payload: checking it there bounds memory by the cap. Data
    frames of one fragmented message are summed; control frames are capped at 125 bytes by
    the RFC and left alone.
    """

    def __init__(self, recv_fn, skip_utf8_validation: bool, max_bytes: int) -> None:
        super().__init__(recv_fn, skip_utf8_validation)
        self.recv = self.buffered = _BufferedRecv(recv_fn)
        self.max_bytes = max_bytes
        self.message_bytes = 0

    def recv_strict(self, bufsize: int) -> bytes:
        return self.buffered.exact(bufsize)

    def recv_length(self) -> None:
        super().recv_length()
        opcode = self.header[4] if self.header else None
        if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
            self.message_bytes = self.length or 0
        elif opcode == websocket.ABNF.OPCODE_CONT:
            self.message_bytes += self.length or 0
        else:
            return
        if self.message_bytes > self.max_bytes:
            raise MessageTooBig(f"message of {self.message_bytes} bytes announced, over the {self.max_bytes}-byte cap")


@dataclass(frozen=True)
class ConnectOptions:
    connect_timeout_s: float = 5.0
    ping_interval_s: float = 3.0
    tls_ca: str | None = None
    insecure: bool = False
    header_as_binary: bool = True


def _sslopt(options: ConnectOptions) -> dict[str, object]:
    if options.insecure:
        return {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    sslopt: dict[str, object] = {"cert_reqs": ssl.CERT_REQUIRED}
    if options.tls_ca:
        sslopt["ca_certs"] = options.tls_ca
    return sslopt


def _close_code(frame_data: bytes) -> tuple[int | None, str]:
    if len(frame_data) >= 2:
        code = struct.unpack("!H", frame_data[:2])[0]
        return code, frame_data[2:].decode("utf-8", "replace")
    return None, ""


class _BufferedRecv:
    """The bytes of one connection's socket, read in large pieces and handed out exactly.

    websocket-client's frame reader asks for a frame's 2-byte header, its extended length and
    its payload one ``recv`` at a time — about four system calls per received frame, and a
    gateway's reply (metadata, audio chunks, ``reply_end``) usually arrives as one segment —
    and joins what it got in a general loop. Here one read takes what the socket holds, and
    :meth:`exact` cuts each request from it.
    """

    __slots__ = ("_buffer", "_offset", "_recv")

    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv  # websocket-client's own: timeouts, TLS, a closed socket raise as before
        self._buffer = b""
        self._offset = 0

    def __call__(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes, like ``socket.recv``."""
        buffer, start = self._buffer, self._offset
        if start >= len(buffer):
            buffer, start = self._recv(READ_BYTES), 0
        end = start + bufsize
        if end >= len(buffer):  # all that is left: hand it over, hold nothing
            self._buffer, self._offset = b"", 0
            return buffer[start:] if start else buffer
        self._buffer, self._offset = buffer, end
        return buffer[start:end]

    @property
    def empty(self) -> bool:
        return self._offset >= len(self._buffer)

    def fill(self) -> None:
        """Read the socket once when nothing is buffered (blocking: cooperative under gevent)."""
        if self._offset >= len(self._buffer):
            self._buffer, self._offset = self._recv(READ_BYTES), 0

    def take_simple_frame(self) -> tuple[int, bytes] | None:
        """``(opcode, payload)`` of the frame at the front of the buffer when it is a complete,
        unfragmented, unmasked text, binary, ping or pong frame of at most 65,535 bytes with no
        reserved bit — every frame a voice gateway normally sends — else None (and nothing taken)."""
        buffer, offset = self._buffer, self._offset
        available = len(buffer) - offset
        if available < 2:
            return None
        first, second = buffer[offset], buffer[offset + 1]
        opcode = first & 0x0F
        if first & 0xF0 != 0x80 or second & 0x80 or opcode not in _SIMPLE_OPCODES:
            return None  # not FIN, a reserved bit, masked, or a continuation/close/unknown opcode
        length = second & 0x7F
        start = offset + 2
        if length == 126:
            if opcode >= 8 or available < 4:
                return None
            length = (buffer[offset + 2] << 8) | buffer[offset + 3]
            start = offset + 4
        elif length == 127:
            return None
        end = start + length
        if end > len(buffer):
            return None  # not all here yet: websocket-client reads the rest
        if end == len(buffer):
            self._buffer, self._offset = b"", 0
        else:
            self._offset = end
        return opcode, buffer[start:end]

    def exact(self, size: int) -> bytes:
        """Exactly ``size`` bytes, reading the socket as often as that takes."""
        buffer, start = self._buffer, self._offset
        end = start + size
        if end < len(buffer):
            self._offset = end
            return buffer[start:end]
        if end == len(buffer):
            self._buffer, self._offset = b"", 0
            return buffer[start:] if start else buffer
        gathered = bytearray(buffer[start:])
        self._buffer, self._offset = b"", 0
        try:
            while len(gathered) < size:
                gathered += self._recv(READ_BYTES)
        except BaseException:
            self._buffer = bytes(gathered)  # nothing read is dropped: a retry starts from here
            raise
        if len(gathered) > size:
            self._buffer, self._offset = bytes(gathered), size
            return self._buffer[:size]
        return bytes(gathered)


_SIMPLE_OPCODES = frozenset((websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY, websocket.ABNF.OPCODE_PING,
                             websocket.ABNF.OPCODE_PONG))


class FrameReader:
    """The frames of one connection, as ``(opcode, payload)``.

    The frames a gateway normally sends — whole (unfragmented), unmasked text, binary, ping and
    pong frames — are cut straight from the buffered bytes (:meth:`_BufferedRecv.take_simple_frame`):
    websocket-client's general reader cost a reply's reading several times its handling. Every
    other frame — a fragment, a large frame, a reserved bit, a masked frame, close, an unknown
    opcode — goes to websocket-client's ``recv_data_frame(True)``, which checks every rule of
    RFC 6455 and joins fragments; after it returned a control frame (which may arrive between
    the fragments of a message), the next frames go to it too until it returns a message.
    ``tests/autobahn_client.py`` runs Autobahn|Testsuite's client cases through this reader.
    """

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws
        self.buffered: _BufferedRecv = ws.frame_buffer.buffered
        self.general = False  # websocket-client reads until it returns a whole message

    def next(self) -> tuple[int, bytes]:
        if not self.general:
            buffered = self.buffered
            frame = buffered.take_simple_frame()
            if frame is None and buffered.empty:
                buffered.fill()
                frame = buffered.take_simple_frame()
            if frame is not None:
                if frame[0] == websocket.ABNF.OPCODE_PING:
                    self.ws.pong(frame[1])  # as websocket-client does for the pings it reads
                return frame
        opcode, frame = self.ws.recv_data_frame(True)
        self.general = opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG)
        return opcode, frame.data


def new_websocket(options: ConnectOptions) -> websocket.WebSocket:
    """websocket-client as the harness uses it: UTF-8 checked, sends locked, messages capped (1009).

    ``tests/autobahn_client.py`` runs Autobahn|Testsuite's client cases through this too.
    """
    ws = websocket.WebSocket(sslopt=_sslopt(options), enable_multithread=True, skip_utf8_validation=False)
    ws.frame_buffer = _CappedFrameBuffer(ws.frame_buffer.recv, False, MAX_MESSAGE_BYTES)
    return ws


def frame_message(opcode: int, data: bytes | str) -> protocol.Message:
    """A data frame's message: ``str`` for text, ``bytes`` for binary.

    Text is decoded strictly here: websocket-client's own check (its pure-Python UTF-8 DFA,
    used when wsaccel is not installed) accepts a message that ends inside a multi-byte
    sequence (Autobahn 6.6.1, 6.14.6...); the UnicodeDecodeError raised here closes with 1007.
    """
    if opcode == websocket.ABNF.OPCODE_TEXT:
        return data.decode("utf-8") if isinstance(data, bytes) else data
    return data


def close_for_violation(error: BaseException) -> tuple[int, str, str] | None:
    """How to close when reading raised ``error``: (close code, reason to record, reason to send).

    None when ``error`` is not the peer breaking WebSocket (a lost connection, a bug).
    """
    if isinstance(error, MessageTooBig):
        return protocol.CLOSE_MESSAGE_TOO_BIG, str(error), "message too big"
    if isinstance(error, websocket.WebSocketPayloadException | UnicodeDecodeError):
        return protocol.CLOSE_INVALID_PAYLOAD, f"invalid payload from the gateway: {error}", "invalid payload"
    if isinstance(error, websocket.WebSocketProtocolException):
        return protocol.CLOSE_PROTOCOL_ERROR, f"WebSocket protocol error from the gateway: {error}", "protocol error"
    return None


class VoiceConnection:
    """One open WebSocket to the gateway with its :class:`ClientSession`: the Locust client's transport.

    Implements :class:`voiceharness.turn.Transport`. Session events go to :attr:`events`
    (the turn driver takes the turn's end from there; ``events.on_event`` sees every event,
    e.g. ``PingMeasured``), delivered from the reader and pinger greenlets and from the pacer.
    Real-time audio goes out through the process-wide pacer (:mod:`voiceharness.locust.pacer`),
    pre-framed; fast-paced audio from the calling greenlet.
    """

    def __init__(
        self,
        settings: Settings,
        options: ConnectOptions,
        session: protocol.ClientSession,
        on_event: Callable[[object], None] | None = None,
        *,
        pacer=None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.session = session
        self.events = TransportEvents(on_event)
        self.connect_ms = math.nan
        self.closed = gevent.event.Event()
        self.is_closed = False  # the same as closed.is_set(), read in the pacer's loop per frame
        self.closed_at = math.nan
        self.close_code: int | None = None
        self.close_reason = ""
        self._ws: websocket.WebSocket | None = None
        self._greenlets: list[gevent.Greenlet] = []
        self._activity = gevent.event.Event()
        if pacer is None:
            from voiceharness.locust.pacer import Pacer

            pacer = Pacer()  # a connection of its own (tests, tools): the run's is environment.voice.pacer
        self.pacer = pacer

    def deliver(self, events: list[object]) -> None:
        """Hand session events on (from the reader, the pinger, the pacer) and wake a waiting turn."""
        if events:
            self.events.deliver(events)
            self._activity.set()

    # -- opening
    def open(self) -> None:
        """Connect, send the header, start the reader and pinger. Raises ConnectionFailed."""
        headers = []
        if self.settings.auth_token:
            headers.append(f"Authorization: Bearer {self.settings.auth_token}")
        ws = new_websocket(self.options)
        started = time.monotonic()
        try:
            ws.connect(
                self.settings.url,
                header=headers,
                timeout=self.options.connect_timeout_s,
                suppress_origin=True,
            )
        except websocket.WebSocketBadStatusException as error:
            code = diagnoses.classify_http_status(error.status_code)
            raise ConnectionFailed(
                f"HTTP {error.status_code} at the WebSocket upgrade of {self.settings.url}",
                code,
                # A refused token or a wrong path does not fix itself: retrying only adds load.
                retryable=code not in ("connection_auth", "connection_http_404"),
                elapsed_ms=(time.monotonic() - started) * 1000.0,
            ) from None
        except (OSError, websocket.WebSocketException, ValueError) as error:
            # Every library/OS error of a connection attempt becomes a diagnosis, never a traceback.
            code = diagnoses.classify_connect_error(error)
            raise ConnectionFailed(
                f"{self.settings.url}: {error or type(error).__name__}",
                code,
                # An untrusted certificate does not fix itself either (a reset handshake might).
                retryable=not isinstance(error, ssl.SSLCertVerificationError),
                elapsed_ms=(time.monotonic() - started) * 1000.0,
            ) from None
        self.connect_ms = (time.monotonic() - started) * 1000.0
        ws.settimeout(None)
        self._ws = ws
        header = self.session.header_message(as_binary=self.options.header_as_binary)
        try:
            if isinstance(header, bytes):
                ws.send_binary(header)
            else:
                ws.send(header)
        except (OSError, websocket.WebSocketException) as error:
            self._ws = None
            raise ConnectionFailed(f"{self.settings.url}: closed before the header was sent ({error})",
                                   "recording_stopped") from None
        self.session.frame_received(time.monotonic())
        self._greenlets = [gevent.spawn(self._read_loop), gevent.spawn(self._ping_loop)]

    @property
    def is_open(self) -> bool:
        return self._ws is not None and not self.closed.is_set()

    # -- the turn driver's transport
    def stream(self, plan: StreamPlan) -> StreamReport:
        """Send one turn's audio (see :class:`voiceharness.turn.StreamPlan`); raises ConnectionError."""
        if plan.pace == "fast":
            return self._stream_fast(plan)
        return self.pacer.stream(self, plan)

    def _stream_fast(self, plan: StreamPlan) -> StreamReport:
        """As fast as the socket takes it: the speech, then the trailing silence; an open
        microphone then goes on at real-time pace until the reply is over."""
        session = self.session
        frames = self.pacer.frames_for(plan)
        silence = self.pacer.silence_frame(plan.chunk_samples)
        clock = time.monotonic
        sent = 0
        for index, frame in microphone(plan, frames, silence, session, self.deliver, clock):
            if index >= len(frames):
                gevent.sleep(plan.frame_s)  # the open microphone's silence goes at real-time pace
            elif index % 16 == 15:
                gevent.sleep(0)  # let the readers run
            self.send_preframed(frame)
            sent += 1
            if index == plan.speech_end_frame:
                session.speech_ended(clock())
        return StreamReport(sent)

    def send_text(self, text: str) -> None:
        """A text message (the end marker), pre-framed once per process."""
        self.send_preframed(self.pacer.preframer.text(text))

    def unsent_bytes(self) -> int | None:
        """Bytes this connection has written that the kernel has not yet sent (see :mod:`voiceharness.uplink`)."""
        ws = self._ws
        if ws is None or ws.sock is None:
            return None
        return uplink.unsent_bytes(ws.sock)

    def wait(self, until: float) -> None:
        """Sleep until ``until`` (monotonic s) or until the session produced events, whichever is first."""
        timeout = until - time.monotonic()
        if timeout > 0 and not self._activity.is_set():
            self._activity.wait(timeout)
        self._activity.clear()

    def abort(self, reason: str) -> None:
        """End the connection now because sending failed (the turn in progress: recording_stopped)."""
        self._lost(None, reason)

    # -- writing ready-made frames (voiceharness.framing)
    def direct_write_target(self) -> tuple[int, object]:
        """``(descriptor, send lock)`` for the pacer's non-blocking writes of ready-made frames.

        The descriptor is -1 on a TLS connection (only the SSL object may write its records).
        A writer that finds the lock free may write (greenlets switch only when one blocks, and
        a non-blocking write never does); a frame it cuts short, it must finish under the lock
        (:meth:`send_preframed` with ``lock_held``).
        """
        ws = self._ws
        if ws is None or ws.sock is None:
            raise ConnectionError("connection closed")
        sock = ws.sock
        return (-1 if isinstance(sock, ssl.SSLSocket) else sock.fileno()), ws.lock

    def send_preframed(self, frame: bytes, *, already_written: int = 0, lock_held: bool = False) -> None:
        """Write one ready-made WebSocket frame (or what is left of it after ``already_written``
        bytes), waiting until the socket has taken all of it.

        Under websocket-client's send lock, so a pong or ping from another greenlet never lands
        in the middle of the frame; ``lock_held``: the caller took it when it cut the frame.
        """
        ws = self._ws
        if ws is None or self.is_closed:
            if lock_held and ws is not None:
                ws.lock.release()
            raise ConnectionError("connection closed")
        rest = memoryview(frame)[already_written:] if already_written else frame
        if lock_held:
            try:
                ws.sock.sendall(rest)
            finally:
                ws.lock.release()
            return
        with ws.lock:
            ws.sock.sendall(rest)

    # -- receiving
    def _read_loop(self) -> None:
        ws = self._ws
        assert ws is not None
        code: int | None = None
        reason = ""
        failure = ""  # set when the gateway broke the WebSocket protocol and we close for it
        frames = FrameReader(ws)
        try:
            while True:
                opcode, data = frames.next()
                now = time.monotonic()
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    code, reason = _close_code(data)
                    break
                if opcode == websocket.ABNF.OPCODE_PONG:
                    event = self.session.pong_received(data, now)
                    if event is not None:
                        self.deliver([event])
                    continue
                if opcode == websocket.ABNF.OPCODE_PING:
                    self.session.frame_received(now)
                    continue
                message = frame_message(opcode, data)
                self.deliver(self.session.receive(message, now))
        except (MessageTooBig, websocket.WebSocketPayloadException, websocket.WebSocketProtocolException,
                UnicodeDecodeError) as error:
            code, reason, sent_reason = close_for_violation(error) or (protocol.CLOSE_PROTOCOL_ERROR, str(error), "")
            failure = "gateway_protocol"
            self._send_close(code, sent_reason)
        except (websocket.WebSocketConnectionClosedException, OSError) as error:
            reason = reason or f"connection lost: {error or type(error).__name__}"
        except gevent.GreenletExit:
            reason = reason or "closed by the harness"
            raise
        except Exception as error:
            log.exception("the reader of connection %s failed (a harness bug)", self.session.header.session_id)
            code, reason, failure = None, f"harness reader failed: {type(error).__name__}: {error}", "harness_error"
            self._send_close(protocol.CLOSE_INTERNAL_ERROR, "harness error")
        finally:
            self._lost(code, reason, failure=failure)

    def _ping_loop(self) -> None:
        """Ping every interval; end the connection as a dead link once nothing arrived for 2 intervals.

        The loop wakes at the next ping or at the moment the silence would reach twice the
        interval, whichever is first, so a dead link is found at 2 intervals, not up to 3.
        """
        interval = self.options.ping_interval_s
        next_ping = time.monotonic()  # the first ping goes out at once: a first turn has a latency too
        sender: gevent.Greenlet | None = None
        while not self.closed.is_set():
            now = time.monotonic()
            silent_s = self.session.link_silent_for(now)
            if silent_s > 2 * interval:
                # The link is dead (a cut cable sends no FIN): end it now instead of waiting for TCP.
                self._lost(None, f"dead link: nothing received for {silent_s:.1f} s", failure="dead_link")
                return
            if now >= next_ping:
                next_ping = now + interval
                # Sent from a greenlet of its own: a send stuck on a full socket buffer (the link
                # is down while audio streams) must not stop this loop from seeing the silence.
                if sender is None or sender.dead:
                    sender = gevent.spawn(self._send_ping, self.session.ping_payload(now))
            gevent.sleep(max(0.01, min(next_ping, now + 2 * interval - silent_s + 0.005) - now))

    def _send_ping(self, payload: bytes) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            ws.ping(payload)
        except (OSError, websocket.WebSocketException):
            pass  # the reader sees the broken socket and reports it

    def _send_close(self, code: int, reason: str) -> None:
        ws = self._ws
        if ws is None:
            return
        try:
            ws.send_close(code, reason.encode("utf-8"))
        except (OSError, websocket.WebSocketException):
            pass  # already broken: the close is what we were doing anyway

    def _lost(self, code: int | None, reason: str, *, failure: str = "") -> None:
        """The connection is over. ``failure`` names the turn's diagnosis when we closed because of
        the gateway (``gateway_protocol``), a dead link or a harness bug, instead of the generic drop."""
        if self.closed.is_set():
            return
        self.close_code, self.close_reason = code, reason
        now = time.monotonic()
        self.closed_at = now
        self.is_closed = True
        self.closed.set()
        events: list[object] = []
        if failure:
            events += self.session.abandon_turn(now, failure, reason)
            for event in events:
                if isinstance(event, protocol.TurnEnded):
                    event.record.close_code = code
        events += self.session.connection_lost(now, code, reason)
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.shutdown()
            except (OSError, websocket.WebSocketException):
                pass  # the socket is gone either way
        self.deliver(events)
        current = gevent.getcurrent()
        if failure == "dead_link":
            for greenlet in self._greenlets:
                if greenlet is not current:
                    greenlet.kill(block=False)

    @property
    def closed_cleanly(self) -> bool:
        return self.close_code in (protocol.CLOSE_NORMAL,)

    # -- closing
    def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "bye") -> None:
        """Close from our side; the turn in progress (if any) must be ended by the caller first.

        Only the reader greenlet reads the socket, so we send the close frame and let the
        reader see the gateway's answer, waiting at most a second for it.
        """
        if self._ws is not None and not self.closed.is_set():
            self._send_close(code, reason)
            self.closed.wait(1.0)
        self._lost(code, reason)
        current = gevent.getcurrent()
        for greenlet in self._greenlets:
            if greenlet is not current:
                greenlet.kill(block=False)
