"""A voice gateway that breaks the rules on purpose, for the harness's fault tests.

It does its own WebSocket handshake and builds its own frames (no WebSocket library), so it
can send what a library would refuse to: invalid UTF-8 in a text frame, reserved bits, an
unknown opcode, a 10 MB message. The *mode* is the last segment of the request path, so one
server serves every case at once and the harness picks one with ``--ws-path /MODE``::

    normal             metadata (GREETING, our correlationId), 3 audio frames, reply_end
    invalid_json       a text frame that is not JSON
    binary_bad_json    a binary frame opening with '{' that is not JSON (the browser tester reads it as audio)
    wrong_types        metadata whose intent is a number and confidence a string
    missing_intent     metadata without an intent
    bad_utf8           a text frame holding invalid UTF-8 (the harness must close 1007)
    reserved_bits      a frame with RSV1 set and no extension negotiated (1002)
    bad_opcode         a frame with the reserved opcode 0x3 (1002)
    huge               one 10 MB binary message (the harness caps messages: 1009)
    close_mid_reply    metadata, 2 audio frames, then close 1011
    stray_then_reply   a reply for another correlationId, then the real one
    stray_then_silent  a reply for another correlationId, then nothing
    silent             accepts, answers pings, never replies

Each mode acts once the client's ``{"type": "end"}`` marker arrives. The server answers pings,
and records the close code each client sent (``closes``: list of (mode, code)).

Use it in a test with ``with MisbehavingGateway() as gateway: ...`` (it runs its asyncio loop
in a thread), optionally with ``ssl_context=`` for wss; or run it by hand with
``python tests/misbehaving_gateway.py --port 7099``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import ssl
import struct
import threading
from dataclasses import dataclass, field
from typing import Self

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
HUGE_BYTES = 10 * 1024 * 1024
HUGE_PAUSE_S = 1.0  # after the header: time for a client that refuses the message to say so
MODES = (
    "normal", "invalid_json", "binary_bad_json", "wrong_types", "missing_intent", "bad_utf8",
    "reserved_bits", "bad_opcode", "huge", "close_mid_reply", "stray_then_reply", "stray_then_silent",
    "silent",
)  # fmt: skip
AUDIO_FRAME = bytes(range(256)) * 8  # 2048 bytes of "reply audio"


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """A server frame (unmasked), built by hand so it may break the rules."""
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode & 0xF
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", first, length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", first, 126, length)
    else:
        head = struct.pack("!BBQ", first, 127, length)
    return head + payload


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8"))


def _json_frame(obj: dict) -> bytes:
    return frame(OP_BINARY, json.dumps(obj).encode("utf-8"))


def _metadata(correlation_id: str, **overrides) -> dict:
    data = {"intent": "GREETING", "confidence": 0.93, "text": "hello jarvis", "slots": {},
            "reply": "Hello!", "correlationId": correlation_id}
    data.update(overrides)
    return data


def _reply(correlation_id: str) -> list[bytes]:
    return [_json_frame(_metadata(correlation_id)), *(frame(OP_BINARY, AUDIO_FRAME) for _ in range(3)),
            _json_frame({"type": "reply_end"})]


@dataclass
class _Connection:
    mode: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    correlation_id: str = ""
    turn_ends: asyncio.Queue = field(default_factory=asyncio.Queue)
    closed: bool = False
    close_received: asyncio.Event = field(default_factory=asyncio.Event)


async def _cancel_all(tasks: set[asyncio.Task]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class MisbehavingGateway:
    """The server; ``port`` is known once it is started (``start()`` or ``with``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.closes: list[tuple[str, int | None]] = []
        self.upgrades: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()

    # -- running in a thread
    def start(self) -> MisbehavingGateway:
        self._thread = threading.Thread(target=self._run, name="misbehaving-gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("misbehaving gateway did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()

    def url(self, scheme: str = "ws") -> str:
        return f"{scheme}://{self.host}:{self.port}"

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, self.host, self.port, ssl=self.ssl_context)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            # Connections that ended just before the stop have tasks cancelled but not yet run:
            # let them finish, or they are destroyed pending (a warning in whichever test is next).
            self._loop.run_until_complete(_cancel_all(asyncio.all_tasks(self._loop)))
            self._loop.close()

    # -- one connection
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, ssl.SSLError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        mode = path.split("?")[0].rstrip("/").rsplit("/", 1)[-1] or "normal"
        key = headers.get("sec-websocket-key", "")
        if mode not in MODES or not key:
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        writer.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        self.upgrades.append(mode)
        connection = _Connection(mode, reader, writer)
        turns = asyncio.ensure_future(self._turns(connection))
        try:
            await self._read_frames(connection)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            connection.closed = True
            turns.cancel()
            writer.close()

    async def _read_frames(self, connection: _Connection) -> None:
        reader = connection.reader
        first_message = True
        while True:
            b1, b2 = await reader.readexactly(2)
            opcode, length = b1 & 0xF, b2 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await reader.readexactly(8))
            mask = await reader.readexactly(4) if b2 & 0x80 else b""
            payload = await reader.readexactly(length)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if length < 4096 else payload
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                self.closes.append((connection.mode, code))
                connection.close_received.set()
                await self._send(connection, close_frame(code or 1000))
                return
            if opcode == OP_PING:
                await self._send(connection, frame(OP_PONG, payload))
                continue
            if opcode not in (OP_TEXT, OP_BINARY):
                continue
            if first_message:  # the JSON header
                first_message = False
                try:
                    connection.correlation_id = json.loads(payload.decode("utf-8")).get("correlationId", "")
                except ValueError:
                    connection.correlation_id = ""
                continue
            if payload[:1] == b"{" and b'"end"' in payload:
                connection.turn_ends.put_nowait(True)

    async def _send(self, connection: _Connection, data: bytes) -> None:
        if connection.closed:
            return
        connection.writer.write(data)
        await connection.writer.drain()

    async def _turns(self, connection: _Connection) -> None:
        try:
            while True:
                await connection.turn_ends.get()
                await self._misbehave(connection)
        except (ConnectionError, OSError, asyncio.CancelledError):
            return

    async def _misbehave(self, c: _Connection) -> None:
        send, cid, mode = self._send, c.correlation_id, c.mode
        if mode == "normal":
            for data in _reply(cid):
                await send(c, data)
        elif mode == "invalid_json":
            await send(c, frame(OP_TEXT, b'{"intent": "GREETING", oops'))
        elif mode == "binary_bad_json":
            await send(c, frame(OP_BINARY, b'{"intent": "GREETING", oops'))
        elif mode == "wrong_types":
            await send(c, _json_frame(_metadata(cid, intent=42, confidence="high")))
        elif mode == "missing_intent":
            meta = _metadata(cid)
            del meta["intent"]
            await send(c, _json_frame(meta))
        elif mode == "bad_utf8":
            await send(c, frame(OP_TEXT, b'{"intent": "\xff\xfe"}'))
        elif mode == "reserved_bits":
            await send(c, frame(OP_BINARY, json.dumps(_metadata(cid)).encode(), rsv=0x4))
        elif mode == "bad_opcode":
            await send(c, frame(0x3, b"what is this"))
        elif mode == "huge":
            chunk = bytes(65536)
            await send(c, frame(OP_BINARY, b"")[:1] + struct.pack("!BQ", 127, HUGE_BYTES) + chunk)
            # A client that refuses the message from its header closes now, leaving the rest unread,
            # so its socket resets ours. Writing on meanwhile, this server would meet the reset in a
            # write, and asyncio then drops the close frame still unread: so it waits to hear the
            # close first. A client that reads on gets all 10 MB.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(c.close_received.wait(), HUGE_PAUSE_S)
            for _ in range(HUGE_BYTES // len(chunk) - 1):
                if c.close_received.is_set():
                    break
                await send(c, chunk)
        elif mode == "close_mid_reply":
            await send(c, _json_frame(_metadata(cid)))
            await send(c, frame(OP_BINARY, AUDIO_FRAME))
            await send(c, frame(OP_BINARY, AUDIO_FRAME))
            await send(c, close_frame(1011, "pipeline crashed"))
        elif mode == "stray_then_reply":
            await send(c, _json_frame(_metadata("another-turn-00000000")))
            for data in _reply(cid):
                await send(c, data)
        elif mode == "stray_then_silent":
            await send(c, _json_frame(_metadata("another-turn-00000000")))
        elif mode == "silent":
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7099)
    args = parser.parse_args()
    gateway = MisbehavingGateway(args.host, args.port).start()
    print(f"misbehaving gateway on {gateway.url()}/MODE, modes: {', '.join(MODES)}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        gateway.stop()


if __name__ == "__main__":
    main()
