"""One client WebSocket on a socket this module owns, and the blocking transport of one voice.

:class:`Connection` is the harness's WebSocket client, used by every client of the harness (the
Locust transport, the one-voice replay, mic_probe's acoustic turn):

* it opens the TCP connection (and TLS), and makes the opening handshake with the ``websockets``
  library's sans-I/O client (:class:`websockets.client.ClientProtocol`: the request, the
  ``Sec-WebSocket-Accept`` check, the status of a refused upgrade) — its public API only;
* it reads frames with :class:`FrameReader`, this module's own sans-I/O reader (bytes in,
  frames out), which checks every rule of RFC 6455 a client must (masking, reserved bits,
  opcodes, control frames, fragmentation, UTF-8 at the byte it breaks, close codes) and caps a
  message at :data:`MAX_MESSAGE_BYTES` from its frame headers, before its payload is read;
* it feeds what arrives to the connection's :class:`~voiceharness.protocol.ClientSession` and
  answers pings and closes (:meth:`Connection.receive`), and writes frames built ahead of time
  (:mod:`voiceharness.framing`: one ``sendall`` per frame, under a lock a writer that bypasses it
  must respect).

Socket calls are plain blocking calls: under gevent's patching (a Locust process) they are
cooperative, so the same class serves a Locust worker and a one-voice tool. A failed attempt to
connect raises :class:`~voiceharness.errors.ConnectionFailed` with a diagnosis; a gateway that
breaks WebSocket's rules is closed with the code RFC 6455 names (1002, 1007, 1009) and the turn
in progress ends as ``gateway_protocol``; nothing here prints a traceback for a fault the usage
guide describes.

:class:`BlockingTransport` is the turn driver's transport (:class:`voiceharness.turn.Transport`)
for one voice on a blocking socket: it streams at real-time pace while reading what the gateway
sends (a gateway that ends utterances on silence answers during the trailing silence).
"""

from __future__ import annotations

import codecs
import logging
import math
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from voiceharness import diagnoses, framing, protocol, uplink
from voiceharness.errors import ConnectionFailed, ProtocolViolation
from voiceharness.turn import Microphone, StreamPlan, StreamReport, TransportEvents

__all__ = ["MAX_MESSAGE_BYTES", "BlockingTransport", "ConnectOptions", "Connection", "FrameReader"]

log = logging.getLogger("voice.connection")

# The harness caps what one message may hold (a gateway that sends more is closed with 1009).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# One read from the socket takes up to this much; the frame reader is served from it.
READ_BYTES = 65536
# The opening handshake's response may not be longer than this.
MAX_RESPONSE_HEAD_BYTES = 65536

OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY = framing.OPCODE_CONTINUATION, framing.OPCODE_TEXT, framing.OPCODE_BINARY
OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = framing.OPCODE_CLOSE, framing.OPCODE_PING, framing.OPCODE_PONG

# Close codes a peer may send (RFC 6455 section 7.4): the defined ones, and 3000-4999 for
# libraries and applications. 1005, 1006 and 1015 must never be sent in a close frame.
_VALID_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))


# ----------------------------------------------------------------------------- frames, sans-I/O


class FrameReader:
    """RFC 6455 frames from a server, as bytes arrive: ``feed(data)``, then ``next()`` until None.

    ``next()`` returns ``(opcode, payload)``: a whole message (``OPCODE_TEXT`` with a ``str``,
    ``OPCODE_BINARY`` with ``bytes``: fragments joined), a ping or a pong (``bytes``), or a close
    (``(code or None, reason)``). A frame that breaks the protocol raises
    :class:`~voiceharness.errors.ProtocolViolation` whose ``close_code`` is the code to close with.

    The frames a gateway normally sends — whole, unmasked, short — are cut straight from the
    buffered bytes: no copy beyond the payload's own slice.
    """

    __slots__ = ("_buffer", "_decoder", "_message_bytes", "_message_opcode", "_offset", "_parts", "max_message_bytes")

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self._buffer = b""
        self._offset = 0
        self._message_opcode = 0  # of a fragmented message in progress (0: none)
        self._message_bytes = 0
        self._parts: list[bytes] = []
        self._decoder: codecs.IncrementalDecoder | None = None

    def feed(self, data: bytes) -> None:
        if self._offset >= len(self._buffer):
            self._buffer, self._offset = data, 0
        else:
            self._buffer = self._buffer[self._offset :] + data
            self._offset = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer) - self._offset

    def next(self) -> tuple[int, object] | None:
        """The next complete frame's message, ping, pong or close; None when more bytes are needed."""
        while True:
            buffer, offset = self._buffer, self._offset
            available = len(buffer) - offset
            if available < 2:
                return None
            first, second = buffer[offset], buffer[offset + 1]
            opcode = first & 0x0F
            fin = first & 0x80
            if first & 0x70:
                raise ProtocolViolation("a frame with a reserved bit set (no extension was agreed)", 1002)
            if second & 0x80:
                raise ProtocolViolation("a masked frame from the server", 1002)
            length = second & 0x7F
            start = offset + 2
            if length == 126:
                if available < 4:
                    return None
                length = (buffer[offset + 2] << 8) | buffer[offset + 3]
                start = offset + 4
            elif length == 127:
                if available < 10:
                    return None
                length = int.from_bytes(buffer[offset + 2 : offset + 10], "big")
                if length >> 63:
                    raise ProtocolViolation("a frame length with its most significant bit set", 1002)
                start = offset + 10
            if opcode >= 8:
                if opcode not in (OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG):
                    raise ProtocolViolation(f"unknown control opcode {opcode:#x}", 1002)
                if not fin or length > 125:
                    raise ProtocolViolation("a control frame fragmented or over 125 bytes", 1002)
            else:
                if opcode not in (OPCODE_CONTINUATION, OPCODE_TEXT, OPCODE_BINARY):
                    raise ProtocolViolation(f"unknown data opcode {opcode:#x}", 1002)
                if opcode == OPCODE_CONTINUATION:
                    if not self._message_opcode:
                        raise ProtocolViolation("a continuation frame with no message to continue", 1002)
                    total = self._message_bytes + length
                elif self._message_opcode:
                    raise ProtocolViolation("a new message before the fragmented one ended", 1002)
                else:
                    total = length
                # From the header, before the payload is read: memory stays bounded by the cap.
                if total > self.max_message_bytes:
                    raise ProtocolViolation(f"message of {total} bytes announced, over the "
                                            f"{self.max_message_bytes}-byte cap", 1009)
            end = start + length
            if end > len(buffer):  # not all here yet
                if opcode == OPCODE_TEXT or (opcode == OPCODE_CONTINUATION and self._decoder is not None):
                    self._check_partial_text(opcode, buffer[start:])
                return None
            payload = buffer[start:end]
            if end == len(buffer):
                self._buffer, self._offset = b"", 0
            else:
                self._offset = end
            if opcode >= 8:
                return (opcode, _close_payload(payload)) if opcode == OPCODE_CLOSE else (opcode, payload)
            if fin and opcode:  # a whole message in one frame: the common case
                return opcode, _text(payload) if opcode == OPCODE_TEXT else payload
            message = self._fragment(opcode, payload, bool(fin))
            if message is not None:
                return message

    def _check_partial_text(self, opcode: int, partial: bytes) -> None:
        """Fail fast: invalid UTF-8 in the part of a text frame that has arrived is refused now,
        not when the rest of the frame comes (Autobahn 6.4.3-6.4.4)."""
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        if opcode == OPCODE_CONTINUATION:
            decoder.setstate(self._decoder.getstate())
        try:
            decoder.decode(partial, final=False)
        except UnicodeDecodeError as error:
            raise ProtocolViolation(f"invalid UTF-8 in a text message: {error.reason}", 1007) from None

    def _fragment(self, opcode: int, payload: bytes, fin: bool) -> tuple[int, object] | None:
        if opcode:  # the first fragment
            self._message_opcode, self._message_bytes, self._parts = opcode, 0, []
            self._decoder = codecs.getincrementaldecoder("utf-8")("strict") if opcode == OPCODE_TEXT else None
        self._message_bytes += len(payload)
        if self._decoder is not None:
            try:  # fail fast: invalid UTF-8 is refused at the fragment it is in (Autobahn 6.4)
                self._decoder.decode(payload, final=fin)
            except UnicodeDecodeError as error:
                raise ProtocolViolation(f"invalid UTF-8 in a text message: {error.reason}", 1007) from None
        self._parts.append(payload)
        if not fin:
            return None
        data = b"".join(self._parts)
        opcode, self._message_opcode, self._parts, self._decoder = self._message_opcode, 0, [], None
        return opcode, data.decode("utf-8") if opcode == OPCODE_TEXT else data


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProtocolViolation(f"invalid UTF-8 in a text message: {error.reason}", 1007) from None


def _close_payload(payload: bytes) -> tuple[int | None, str]:
    if not payload:
        return None, ""
    if len(payload) == 1:
        raise ProtocolViolation("a close frame with a 1-byte payload", 1002)
    code = int.from_bytes(payload[:2], "big")
    if code not in _VALID_CLOSE_CODES and not 3000 <= code <= 4999:
        raise ProtocolViolation(f"close code {code} is not one a peer may send", 1002)
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation("a close reason that is not UTF-8", 1007) from None
    return code, reason


def close_frame(code: int, reason: str, mask_key: bytes) -> bytes:
    return framing.client_frame(code.to_bytes(2, "big") + reason.encode("utf-8")[:123], mask_key, OPCODE_CLOSE)


# ----------------------------------------------------------------------------- the connection


@dataclass(frozen=True)
class ConnectOptions:
    connect_timeout_s: float = 5.0
    ping_interval_s: float = 3.0
    tls_ca: str | None = None
    insecure: bool = False
    header_as_binary: bool = True


def _tls_context(options: ConnectOptions) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.tls_ca or None)
    if options.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Connection:
    """One client WebSocket to a gateway (see the module docstring).

    ``receive()`` reads the socket once and returns the session's events for what arrived;
    ``closed`` is set once the connection is over (the gateway closed it, it broke the protocol,
    the link died, or we closed it), with ``close_code``/``close_reason`` saying how.
    """

    def __init__(self, url: str, session: protocol.ClientSession, options: ConnectOptions | None = None, *,
                 auth_token: str | None = None, mask_key: bytes | None = None) -> None:
        self.url = url
        self.session = session
        self.options = options or ConnectOptions()
        self.auth_token = auth_token
        self.mask_key = mask_key if mask_key is not None else framing.new_mask_key()
        self.reader = FrameReader()
        self.sock: socket.socket | None = None
        self.send_lock = threading.Lock()  # one frame at a time on the wire (made per connection: gevent's under Locust)
        self.connect_ms = math.nan
        self.closed = False
        self.closed_at = math.nan
        self.close_code: int | None = None
        self.close_reason = ""
        self.last_sent_at = math.nan  # when a frame was last handed to the socket (monotonic s)
        self._close_sent = False
        self._drained_after_open = False
        # A frame frames_received(hold_sends=True) stopped at: (opcode, payload), or the violation.
        self.held: tuple[int, object] | ProtocolViolation | None = None
        # Called once, just before the socket is closed (a watcher on its descriptor must stop first).
        self.before_socket_close: Callable[[], None] | None = None

    # -- opening
    def open(self, *, send_header: bool = True) -> None:
        """TCP (+ TLS), the opening handshake, then (unless told not to) the session's JSON header.
        Raises ConnectionFailed."""
        from websockets.client import ClientProtocol
        from websockets.exceptions import InvalidStatus, InvalidURI
        from websockets.uri import parse_uri

        started = time.monotonic()

        def failed(message: str, code: str, *, retryable: bool = True) -> ConnectionFailed:
            return ConnectionFailed(message, code, retryable=retryable, elapsed_ms=(time.monotonic() - started) * 1000)

        try:
            uri = parse_uri(self.url)
        except InvalidURI as error:
            raise failed(f"{self.url}: not a WebSocket URL ({error})", "connection_http", retryable=False) from None
        handshake = ClientProtocol(uri)
        request = handshake.connect()
        if self.auth_token:
            request.headers["Authorization"] = f"Bearer {self.auth_token}"
        try:
            sock = socket.create_connection((uri.host, uri.port), timeout=self.options.connect_timeout_s)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if uri.secure:
                    sock = _tls_context(self.options).wrap_socket(sock, server_hostname=uri.host)
                handshake.send_request(request)
                sock.sendall(b"".join(handshake.data_to_send()))
                head, rest = _read_response_head(sock)
                handshake.receive_data(head)
                if not head.startswith((b"HTTP/1.1 101 ", b"HTTP/1.0 101 ")):
                    # A refusal: the parser wants its body too (what follows a 101 is frames, ours to read).
                    _feed_refusal_body(sock, handshake, rest)
            except BaseException:
                sock.close()
                raise
        except ConnectionFailed:
            raise
        except (OSError, ValueError) as error:
            # Every OS error of a connection attempt becomes a diagnosis, never a traceback.
            code = diagnoses.classify_connect_error(error)
            # An untrusted certificate does not fix itself (a reset handshake might).
            raise failed(f"{self.url}: {error or type(error).__name__}", code,
                         retryable=not isinstance(error, ssl.SSLCertVerificationError)) from None
        handshake.events_received()
        if handshake.handshake_exc is not None:
            sock.close()
            error = handshake.handshake_exc
            if isinstance(error, InvalidStatus):
                status = error.response.status_code
                code = diagnoses.classify_http_status(status)
                # A refused token or a wrong path does not fix itself: retrying only adds load.
                raise failed(f"HTTP {status} at the WebSocket upgrade of {self.url}", code,
                             retryable=code not in ("connection_auth", "connection_http_404")) from None
            raise failed(f"{self.url}: the WebSocket upgrade failed ({error})", "connection_http") from None
        self.connect_ms = (time.monotonic() - started) * 1000.0
        sock.settimeout(None)
        self.sock = sock
        # What came after the upgrade's response in the same read (a gateway may speak at once):
        # the first receive() hands it on before it reads the socket again.
        self.reader.feed(rest)
        if not send_header:
            return
        header = self.session.header_message(as_binary=self.options.header_as_binary)
        try:
            self.send_frame(framing.client_frame(header, self.mask_key))
        except OSError as error:
            self.sock = None
            sock.close()
            raise ConnectionFailed(f"{self.url}: closed before the header was sent ({error})",
                                   "recording_stopped") from None
        self.session.frame_received(time.monotonic())

    # -- writing
    def send_frame(self, frame: bytes | memoryview, *, already_written: int = 0, lock_held: bool = False,
                   control: bool = False) -> None:
        """Write one whole frame (or what is left of it after ``already_written`` bytes; ``lock_held``:
        the caller took the send lock when it cut the frame short). Raises ConnectionError when closed.
        A data frame (audio, the end marker) sets :attr:`last_sent_at`; a ``control`` frame (ping,
        pong, close) does not: the turn's split counts from the utterance's last frame."""
        sock = self.sock
        if sock is None or self.closed:
            if lock_held:
                self.send_lock.release()
            raise ConnectionError("connection closed")
        rest = memoryview(frame)[already_written:] if already_written else frame
        if not lock_held:
            self.send_lock.acquire()
        try:
            # Stamped as the frame is handed over, not after: on loopback the peer can read it (and
            # stamp its arrival) before this call returns and before this process reads its clock
            # again. A frame the kernel cannot take at once waits in its buffer either way, which
            # the turn's uplink backlog reports.
            handed_at = time.monotonic()
            if already_written or isinstance(sock, ssl.SSLSocket):
                sock.sendall(rest)
            else:
                # One plain write first: a frame the socket takes whole (nearly every one) costs a
                # system call, not gevent's sendall machinery; what it does not take, sendall finishes.
                try:
                    written = os.write(sock.fileno(), frame)
                except BlockingIOError:
                    written = 0
                if written < len(frame):
                    sock.sendall(memoryview(frame)[written:])
            if not control:
                self.last_sent_at = handed_at
        finally:
            self.send_lock.release()

    def direct_write_target(self) -> tuple[int, threading.Lock]:
        """``(descriptor, send lock)`` for a writer that writes ready-made frames itself without
        blocking (the Locust pacer). The descriptor is -1 on TLS (only the SSL object may write its
        records). A writer that finds the lock free may write; a frame it cuts short it must finish
        under the lock (:meth:`send_frame` with ``lock_held``)."""
        sock = self.sock
        if sock is None or self.closed:
            raise ConnectionError("connection closed")
        return (-1 if isinstance(sock, ssl.SSLSocket) else sock.fileno()), self.send_lock

    def write_now(self, frame: bytes) -> int:
        """Hand a whole ready-made ``frame`` to the socket now if that cannot block; the bytes
        written. All of them: done. A first part: the send lock is left held, for the caller to
        finish the frame from a greenlet (:meth:`send_frame` with ``already_written`` and
        ``lock_held``). 0: nothing now (the socket full, another frame holding the lock, TLS, a
        shaped link, closed): send it the blocking way. Raises OSError when the socket is broken.
        For writers that must not block: the pacer's end marker, the watcher's ping."""
        try:
            fd, lock = self.direct_write_target()
        except ConnectionError:
            return 0
        if fd < 0 or not lock.acquire(False):
            return 0
        try:
            written = os.write(fd, frame)
        except BlockingIOError:
            written = 0
        except OSError:
            lock.release()
            raise
        if written == len(frame) or not written:
            lock.release()
        return written

    def ping(self, payload: bytes) -> None:
        self.send_frame(framing.client_frame(payload, self.mask_key, OPCODE_PING), control=True)

    def unsent_bytes(self) -> int | None:
        """Bytes written that the kernel has not yet sent (see :mod:`voiceharness.uplink`)."""
        return uplink.unsent_bytes(self.sock) if self.sock is not None else None

    # -- reading
    def receive(self) -> list[object]:
        """Read the socket once (blocking; cooperative under gevent) and return the session's events
        for every frame that arrived. When the connection ends here (the gateway closed it, broke
        the protocol, or the socket failed) the events include its end and :attr:`closed` is set."""
        sock = self.sock
        if sock is None or self.closed:
            return []
        if self.reader.buffered and not self._drained_after_open:
            self._drained_after_open = True
            return self.frames_received(time.monotonic())
        self._drained_after_open = True
        try:
            data = sock.recv(READ_BYTES)
        except OSError as error:
            return self.lost(None, f"connection lost: {error or type(error).__name__}")
        if not data:
            return self.lost(None, "connection lost: the gateway closed the socket without a close frame")
        self.reader.feed(data)
        return self.frames_received(time.monotonic())

    def read_forever(self, deliver: Callable[[list[object]], None]) -> None:
        """Read until the connection is over, handing what each read brought to ``deliver`` (the
        turn's :meth:`voiceharness.turn.TransportEvents.deliver`): the Locust transport runs this
        in a greenlet of its own. A bug here is the harness's: the turn in progress ends as
        ``harness_error`` and the gateway is told 1011. Stopped from outside (gevent's
        ``GreenletExit``), the connection ends as closed by the harness."""
        try:
            while not self.closed:
                events = self.receive()
                if events:
                    deliver(events)
        except Exception as error:
            log.exception("the reader of connection %s failed (a harness bug)", self.session.header.session_id)
            self.send_close(protocol.CLOSE_INTERNAL_ERROR, "harness error")
            detail = f"harness reader failed: {type(error).__name__}: {error}"
            deliver(self.lost(None, detail, abandon=(protocol.Abandon.HARNESS_ERROR, detail)))
        except BaseException:
            deliver(self.lost(None, "closed by the harness"))
            raise

    def frames_received(self, now: float, *, hold_sends: bool = False) -> list[object]:
        """The session's events for the complete frames buffered (pings answered, a close echoed).

        With ``hold_sends`` (a caller that must not block: gevent's loop itself) it stops at the
        first frame that needs an answer written — a ping, a close, a protocol violation — and
        keeps it in :attr:`held`; :meth:`release_held`, from a caller that may block, handles it
        and goes on with the frames after it."""
        session = self.session
        events: list[object] = []
        try:
            while True:
                frame = self.reader.next()
                if frame is None:
                    return events
                opcode, payload = frame
                if opcode == OPCODE_BINARY or opcode == OPCODE_TEXT:
                    events += session.receive(payload, now)
                elif opcode == OPCODE_PONG:
                    measured = session.pong_received(payload, now)
                    if measured is not None:
                        events.append(measured)
                elif hold_sends:
                    self.held = frame
                    return events
                else:
                    events += self._control_received(opcode, payload, now)
                    if self.closed:
                        return events
        except ProtocolViolation as violation:
            if hold_sends:
                self.held = violation
                return events
            return events + self._violated(violation)
        except OSError as error:  # a pong or close could not be written: the link is gone
            return events + self.lost(None, f"connection lost: {error or type(error).__name__}")

    def release_held(self, now: float) -> list[object]:
        """Handle the frame (or violation) :meth:`frames_received` held, then the frames after it.
        May block: it writes."""
        held, self.held = self.held, None
        if held is None or self.closed:
            return []
        try:
            if isinstance(held, ProtocolViolation):
                return self._violated(held)
            events = self._control_received(*held, now)
        except OSError as error:
            return self.lost(None, f"connection lost: {error or type(error).__name__}")
        return events if self.closed else events + self.frames_received(now)

    def _control_received(self, opcode: int, payload, now: float) -> list[object]:
        """A ping (answered with its pong) or a close (echoed, and then the connection is over)."""
        if opcode == OPCODE_PING:
            self.session.frame_received(now)
            self.send_frame(framing.client_frame(payload, self.mask_key, OPCODE_PONG), control=True)
            return []
        code, reason = payload
        self.send_close(code if code is not None else protocol.CLOSE_NORMAL, "")
        return self.lost(code, reason or "closed by the gateway")

    def _violated(self, violation: ProtocolViolation) -> list[object]:
        """The gateway broke WebSocket's rules: close with the code RFC 6455 names; the turn is abandoned."""
        self.send_close(violation.close_code, "protocol error" if violation.close_code == 1002
                        else "invalid payload" if violation.close_code == 1007 else "message too big")
        detail = f"WebSocket violation from the gateway (closed {violation.close_code}): {violation}"
        return self.lost(violation.close_code, str(violation), abandon=(protocol.Abandon.GATEWAY_PROTOCOL, detail))

    # -- ending
    def send_close(self, code: int, reason: str) -> None:
        """Send a close frame once (the closing handshake's half that is ours); errors are ignored:
        a broken socket is what we were closing anyway."""
        if self._close_sent or self.sock is None:
            return
        self._close_sent = True
        try:
            self.send_frame(close_frame(code, reason, self.mask_key), control=True)
        except OSError:
            pass

    def lost(self, code: int | None, reason: str, *,
             abandon: tuple[protocol.Abandon, str] | None = None) -> list[object]:
        """The connection is over: the socket is shut, the session told (a turn in progress ends);
        ``abandon`` names why we ended the turn ourselves (the gateway broke the protocol, a dead
        link) instead of the plain drop."""
        if self.closed:
            return []
        now = time.monotonic()
        self.closed, self.closed_at = True, now
        self.close_code, self.close_reason = code, reason
        events: list[object] = []
        if abandon is not None:
            events += self.session.abandon_turn(now, *abandon, close_code=code)
        events += self.session.connection_lost(now, code, reason)
        sock, self.sock = self.sock, None
        if sock is not None:
            if self.before_socket_close is not None:
                self.before_socket_close()
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone
            sock.close()
        return events

    @property
    def closed_cleanly(self) -> bool:
        return self.close_code == protocol.CLOSE_NORMAL


def _feed_refusal_body(sock: socket.socket, handshake, rest: bytes) -> None:
    """Hand a refused upgrade's body to the handshake parser until it has the whole response."""
    data = rest
    for _ in range(MAX_RESPONSE_HEAD_BYTES // 4096):
        if data:
            handshake.receive_data(data)
        if handshake.handshake_exc is not None or handshake.events_received():
            return
        data = sock.recv(4096)
        if not data:
            handshake.receive_eof()
            return


def _read_response_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The handshake response's head (through the blank line) and what came after it."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_RESPONSE_HEAD_BYTES:
            raise ValueError(f"no end of the HTTP response head in its first {MAX_RESPONSE_HEAD_BYTES} bytes")
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("the gateway closed the connection during the WebSocket upgrade")
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


# ----------------------------------------------------------------------------- one voice


class BlockingTransport:
    """One voice's connection on a blocking socket: the turn driver's transport outside Locust
    (the one-voice replay, mic_probe's acoustic turn). Frames go out at real-time pace (or as
    fast as the socket takes them); between them it reads what the gateway sends."""

    def __init__(self, url: str, session: protocol.ClientSession, options: ConnectOptions | None = None, *,
                 auth_token: str | None = None) -> None:
        self.session = session
        self.events = TransportEvents()
        self.connection = Connection(url, session, options, auth_token=auth_token)
        self.connection.open()
        self.connect_ms = self.connection.connect_ms

    # -- sending
    def stream(self, plan: StreamPlan, microphone: Microphone) -> StreamReport:
        session = self.session
        silence = framing.client_frame(bytes(2 * plan.chunk_samples), self.connection.mask_key)
        frames: Sequence[bytes] = [framing.client_frame(bytes(frame), self.connection.mask_key) for frame in plan.frames]
        frames = [*frames, *([silence] * plan.min_silence_frames)]
        realtime = plan.pace != "fast"
        start = time.monotonic()
        late_max_s = 0.0
        sent = 0
        for index, frame in microphone.frames(plan, frames, silence, time.monotonic):
            due = start + index * plan.frame_s
            if realtime or index >= len(frames):
                self.read_until(due)  # the gateway may answer while we speak
            self.connection.send_frame(frame)
            now = time.monotonic()
            if realtime:
                late_max_s = max(late_max_s, now - due)
            if index == plan.speech_end_frame:
                session.speech_ended(now)
            sent += 1
        return StreamReport(sent, late_max_s * 1000 if realtime else math.nan)

    def send_text(self, text: str) -> None:
        self.connection.send_frame(framing.client_frame(text, self.connection.mask_key))

    def last_sent_at(self) -> float:
        return self.connection.last_sent_at

    def unsent_bytes(self) -> int | None:
        return self.connection.unsent_bytes()

    # -- receiving
    def wait(self, until: float) -> None:
        self.read_until(until, stop_on_events=True)

    def read_until(self, until: float, *, stop_on_events: bool = False) -> None:
        """Read what arrives until ``until`` (monotonic s), feeding the session."""
        connection = self.connection
        while connection.sock is not None and not connection.closed:
            readable, _, _ = select.select([connection.sock], [], [], max(0.0, until - time.monotonic()))
            if not readable:
                return
            events = connection.receive()
            self.events.deliver(events)
            if stop_on_events and events:
                return

    def abort(self, reason: str) -> None:
        self.events.deliver(self.connection.lost(None, reason))

    def close(self, code: int = protocol.CLOSE_NORMAL, reason: str = "bye") -> None:
        """Close from our side: our close frame, up to a second for the gateway's, then the socket."""
        connection = self.connection
        if connection.closed:
            return
        connection.send_close(code, reason)
        deadline = time.monotonic() + 1.0
        while not connection.closed and time.monotonic() < deadline:
            self.read_until(deadline, stop_on_events=True)
        self.events.deliver(connection.lost(code, reason))
