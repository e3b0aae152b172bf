"""A minimal WebSocket voice sink: the cheapest system under test that still speaks the protocol.

The reference gateway's ``--fast-sink`` mode skips recognition and synthesis but still runs
the ``websockets`` library (41-76 µs per received frame) and the endpointer on every frame,
so on a 2-core machine it becomes the bottleneck near 1,000-1,500 real-time streams, before
the load generator does. To measure the *load generator* up to 2,000 streams this sink does
the least a server can: a raw asyncio protocol that answers the upgrade, skips audio frames
by their header (never unmasking them), answers pings, and answers each end marker
(``{"type":"end"}``, text or binary) after ``--delay-ms`` with the fast sink's reply:
GREETING metadata, 100 ms of reply audio and ``{"type":"reply_end"}``.

It keeps its own ground truth: for every end marker, when it was read and when the reply
was written (``time.monotonic()``, which on Linux is the same clock in every process), and
writes them with ``--stats PATH`` when it gets SIGTERM/SIGINT.

    python -m bench.sink --port 7099 [--delay-ms 0] [--stats sink.json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import signal
import struct
import time
from pathlib import Path

import numpy as np

from voiceharness import framing

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
REPLY_AUDIO_MS = 100
REPLY_CHUNK_BYTES = 2048


def _server_frame(payload: bytes, opcode: int = framing.OPCODE_BINARY) -> bytes:
    return framing.frame_header(len(payload), opcode, masked=False) + payload


def reply_bytes() -> bytes:
    """The fixed reply, pre-framed: metadata, reply audio (100 ms tone), reply_end."""
    metadata = json.dumps({"intent": "GREETING", "confidence": 1.0, "text": "", "slots": {},
                           "reply": "fast sink"}, separators=(",", ":")).encode()
    t = np.arange(16 * REPLY_AUDIO_MS) / 16000
    audio = (3276 * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()
    parts = [_server_frame(metadata)]
    parts += [_server_frame(audio[i : i + REPLY_CHUNK_BYTES]) for i in range(0, len(audio), REPLY_CHUNK_BYTES)]
    parts.append(_server_frame(b'{"type":"reply_end"}'))
    return b"".join(parts)


class SinkStats:
    def __init__(self) -> None:
        self.connections = 0
        self.frames = 0
        self.markers: list[tuple[float, float]] = []  # (marker read, reply written), monotonic s

    def to_json(self) -> dict[str, object]:
        turnaround = np.array([w - r for r, w in self.markers]) * 1000 if self.markers else np.array([np.nan])
        return {
            "connections": self.connections,
            "frames": self.frames,
            "replies": len(self.markers),
            "turnaround_p50_ms": float(np.percentile(turnaround, 50)),
            "turnaround_p99_ms": float(np.percentile(turnaround, 99)),
            "turnaround_max_ms": float(np.max(turnaround)),
        }


class SinkProtocol(asyncio.Protocol):
    def __init__(self, stats: SinkStats, reply: bytes, delay_s: float) -> None:
        self.stats = stats
        self.reply = reply
        self.delay_s = delay_s
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.messages = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.stats.connections += 1

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self._upgrade(bytes(buffer[:end]))
            del buffer[: end + 4]
        self._frames()

    def _upgrade(self, request: bytes) -> None:
        key = b""
        first = request.split(b"\r\n", 1)[0]
        for line in request.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        assert self.transport is not None
        if not key:
            body = b"ok\n" if first.startswith((b"GET /readyz", b"GET /healthz")) else b"not found\n"
            status = b"200 OK" if body == b"ok\n" else b"404 Not Found"
            self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
            self.transport.close()
            return
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        self.upgraded = True

    def _frames(self) -> None:
        buffer = self.buffer
        position = 0
        size = len(buffer)
        stats = self.stats
        while size - position >= 2:
            second = buffer[position + 1]
            length = second & 0x7F
            header = 6  # 2 + mask key
            if length == 126:
                if size - position < 8:
                    break
                length = (buffer[position + 2] << 8) | buffer[position + 3]
                header = 8
            elif length == 127:
                if size - position < 14:
                    break
                length = struct.unpack_from("!Q", buffer, position + 2)[0]
                header = 14
            end = position + header + length
            if end > size:
                break
            opcode = buffer[position] & 0x0F
            self.messages += 1
            if opcode == framing.OPCODE_BINARY and length > 1 and self.messages > 1:
                # Audio, unless a small frame that opens with '{' (JSON end marker sent binary).
                if length < 64 and buffer[position + header] ^ buffer[position + header - 4] == 0x7B:
                    self._control(opcode, buffer, position, header, length)
                else:
                    stats.frames += 1
            else:
                self._control(opcode, buffer, position, header, length)
            position = end
        if position:
            del buffer[:position]

    def _control(self, opcode: int, buffer: bytearray, position: int, header: int, length: int) -> None:
        key = bytes(buffer[position + header - 4 : position + header])
        payload = framing.mask(buffer[position + header : position + header + length], key) if length else b""
        transport = self.transport
        assert transport is not None
        if opcode == framing.OPCODE_PING:
            transport.write(_server_frame(payload, framing.OPCODE_PONG))
        elif opcode == framing.OPCODE_CLOSE:
            transport.write(_server_frame(payload[:2], framing.OPCODE_CLOSE))
            transport.close()
        elif b'"end"' in payload and self.messages > 1:
            read_at = time.monotonic()
            if self.delay_s > 0:
                asyncio.get_running_loop().call_later(self.delay_s, self._answer, read_at)
            else:
                self._answer(read_at)

    def _answer(self, read_at: float) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(self.reply)
        self.stats.markers.append((read_at, time.monotonic()))

    def connection_lost(self, exc) -> None:
        self.transport = None


async def serve(host: str, port: int, delay_ms: float, stats_path: str | None) -> None:
    stats = SinkStats()
    reply = reply_bytes()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(stats, reply, delay_ms / 1000), host, port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"sink listening on {host}:{port}, delay {delay_ms:g} ms", flush=True)
    await stop.wait()
    server.close()
    if stats_path:
        Path(stats_path).write_text(json.dumps(stats.to_json()), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--stats", default=None)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.delay_ms, args.stats))


if __name__ == "__main__":
    main()
