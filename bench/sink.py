"""A minimal WebSocket voice sink: the cheapest system under test that still speaks the protocol.

The reference gateway's ``--fast-sink`` mode skips recognition and synthesis but still runs
the ``websockets`` library (41-76 µs per received frame) and the endpointer on every frame,
so on a 2-core machine it becomes the bottleneck near 1,000-1,500 real-time streams, before
the load generator does. To measure the *load generator* up to 2,000 streams this sink does
the least a server can: a raw asyncio protocol that answers the upgrade, skips audio frames
by their header (never unmasking them), answers pings, and answers each end marker
(``{"type":"end"}``, text or binary) after ``--delay-ms`` with the fast sink's reply:
GREETING metadata, 100 ms of reply audio and ``{"type":"reply_end"}``.

It keeps its own ground truth, on ``time.monotonic()`` (CLOCK_MONOTONIC: one clock for every
process on the machine, so its stamps and the harness's subtract): for every end marker,
when it was read and when the reply was written; ``--stats PATH`` writes their summary when
it gets SIGTERM/SIGINT.

With ``--speech-ends SELECT`` (a corpus selection, e.g. ``GREETING``) it also stamps, for
every turn, when it read the frame that holds the last speech sample, and writes one row
per turn to ``--turns PATH`` (CSV, flushed every second): session id, turn number on the
connection, utterance, frames, speech end read, marker read, reply written. The truth
benchmark's ground truth is ``reply written - speech end read``. How the sink knows which
frame ends speech, from the sink's side alone: a turn is the audio frames between two end
markers, so it knows each frame's index in its turn; from the corpus it knows, for each
utterance, the index of the speech-end frame and its first bytes. A frame at one of those
indices is unmasked (its first few bytes only: the mask key is in the frame) and looked up;
it is the speech end when its bytes and its index both match an utterance's speech-end
frame. The prefix length is the shortest that tells every speech-end frame from every other
frame of the corpus at the same index (:func:`speech_end_fingerprints`), so a match cannot
be a look-alike. Clients that send no end marker (``--no-end-marker``) are not covered.

    python -m bench.sink --port 7099 [--delay-ms 0] [--stats sink.json] [--speech-ends GREETING --turns turns.csv]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import hashlib
import json
import signal
import struct
import time
from collections import Counter
from pathlib import Path

import numpy as np

from voiceharness import framing, guide

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


TURN_COLUMNS = ("session_id", "turn", "utterance_id", "frames", "speech_end_read_s", "marker_read_s",
                "reply_written_s")
_PREFIX_BYTES = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)


def speech_end_fingerprints(select: str) -> tuple[int, dict[tuple[int, int], str]]:
    """(prefix length in bytes, {(speech-end frame index, int of its first bytes): utterance id}).

    The shortest prefix for which no other frame of the corpus at a speech-end index has the
    same first bytes as a speech-end frame at that index.
    """
    from audio_corpus import load_corpus  # only the truth mode needs the corpus

    chunk = guide.CHUNK_SAMPLES
    utterances = [(u.id, [bytes(f) for f in u.frames(chunk)], u.speech_end_frame(chunk)) for u in load_corpus(select=select)]
    if not utterances:
        raise SystemExit(f"sink: --speech-ends {select!r} selects no utterance of the corpus")
    for length in _PREFIX_BYTES:
        table: dict[tuple[int, int], str] = {}
        for uid, frames, end in utterances:
            table.setdefault((end, int.from_bytes(frames[end][:length], "big")), uid)
        others = Counter((j, int.from_bytes(f[:length], "big")) for _uid, frames, end in utterances
                         for j, f in enumerate(frames) if j != end)
        if not any(key in others for key in table):
            return length, table
    raise SystemExit(f"sink: a speech-end frame of {select!r} is identical to another frame at the same index")


class SinkStats:
    def __init__(self) -> None:
        self.connections = 0
        self.frames = 0
        self.markers: list[tuple[float, float]] = []  # (marker read, reply written), monotonic s
        self.turn_rows: list[tuple] = []  # TURN_COLUMNS, not yet written to --turns

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
    def __init__(self, stats: SinkStats, reply: bytes, delay_s: float,
                 speech_ends: tuple[int, dict[tuple[int, int], str]] | None = None) -> None:
        self.stats = stats
        self.reply = reply
        self.delay_s = delay_s
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.messages = 0
        # Truth mode (--speech-ends): this turn's frames so far and when its speech end was read.
        self.prefix_bytes, self.speech_end_table = speech_ends or (0, {})
        self.speech_end_indices = frozenset(index for index, _ in self.speech_end_table)
        self.session_id = ""
        self.turn = 0
        self.turn_frames = 0
        self.speech_end_read_at = float("nan")
        self.utterance_id = ""
        self.read_at = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.stats.connections += 1

    def data_received(self, data: bytes) -> None:
        if self.prefix_bytes:
            self.read_at = time.monotonic()  # every frame of this read arrived by now
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
                    if self.turn_frames in self.speech_end_indices:
                        self._speech_end(buffer, position + header, length)
                    self.turn_frames += 1
            else:
                self._control(opcode, buffer, position, header, length)
            position = end
        if position:
            del buffer[:position]

    def _speech_end(self, buffer: bytearray, payload_at: int, length: int) -> None:
        """Is this frame (at a speech-end index of its turn) an utterance's speech-end frame?"""
        size = min(self.prefix_bytes, length)
        key = bytes(buffer[payload_at - 4 : payload_at]) * (size // 4 + 1)
        prefix = int.from_bytes(buffer[payload_at : payload_at + size], "big") ^ int.from_bytes(key[:size], "big")
        utterance = self.speech_end_table.get((self.turn_frames, prefix))
        if utterance is not None:
            self.speech_end_read_at, self.utterance_id = self.read_at, utterance

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
        elif self.messages == 1:
            if self.prefix_bytes:
                try:
                    self.session_id = str(json.loads(payload).get("sessionId", ""))
                except (ValueError, AttributeError):
                    self.session_id = ""
        elif b'"end"' in payload:
            read_at = time.monotonic()
            turn = None
            if self.prefix_bytes:
                turn = [self.session_id, self.turn, self.utterance_id, self.turn_frames, self.speech_end_read_at, read_at]
                self.turn += 1
                self.turn_frames, self.speech_end_read_at, self.utterance_id = 0, float("nan"), ""
            if self.delay_s > 0:
                asyncio.get_running_loop().call_later(self.delay_s, self._answer, read_at, turn)
            else:
                self._answer(read_at, turn)

    def _answer(self, read_at: float, turn: list | None) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(self.reply)
        # Stamped once the reply is in the kernel (as the harness stamps a frame once its send returned).
        written_at = time.monotonic()
        self.stats.markers.append((read_at, written_at))
        if turn is not None:
            self.stats.turn_rows.append((*turn, written_at))

    def connection_lost(self, exc) -> None:
        self.transport = None


class _TurnsFile:
    """``--turns``: the per-turn ground truth, appended as CSV once a second (and at the end)."""

    def __init__(self, path: str, stats: SinkStats) -> None:
        self.stats = stats
        self.file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.writer = csv.writer(self.file)
        self.writer.writerow(TURN_COLUMNS)
        self.file.flush()

    def flush(self) -> None:
        rows, self.stats.turn_rows = self.stats.turn_rows, []
        self.writer.writerows((sid, turn, uid, frames, f"{end:.6f}", f"{marker:.6f}", f"{reply:.6f}")
                              for sid, turn, uid, frames, end, marker, reply in rows)
        self.file.flush()

    async def flush_every_second(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.flush()

    def close(self) -> None:
        self.flush()
        self.file.close()


async def serve(host: str, port: int, delay_ms: float, stats_path: str | None, speech_ends: str | None = None,
                turns_path: str | None = None) -> None:
    stats = SinkStats()
    reply = reply_bytes()
    loop = asyncio.get_running_loop()
    fingerprints = speech_end_fingerprints(speech_ends) if speech_ends else None
    turns = _TurnsFile(turns_path, stats) if turns_path and fingerprints else None
    server = await loop.create_server(lambda: SinkProtocol(stats, reply, delay_ms / 1000, fingerprints), host, port,
                                      backlog=4096)
    flusher = loop.create_task(turns.flush_every_second()) if turns else None
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"sink listening on {host}:{port}, delay {delay_ms:g} ms"
          + (f", speech ends of {speech_ends} told by their first {fingerprints[0]} bytes" if fingerprints else ""),
          flush=True)
    await stop.wait()
    server.close()
    if flusher is not None:
        flusher.cancel()
    if turns is not None:
        turns.close()
    if stats_path:
        Path(stats_path).write_text(json.dumps(stats.to_json()), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--stats", default=None)
    parser.add_argument("--speech-ends", default=None, metavar="SELECT",
                        help="stamp each turn's speech-end frame, for utterances of this corpus selection (e.g. GREETING)")
    parser.add_argument("--turns", default=None, metavar="PATH", help="with --speech-ends: one CSV row per turn")
    args = parser.parse_args(argv)
    if args.turns and not args.speech_ends:
        parser.error("--turns needs --speech-ends SELECT (the corpus the clients send)")
    asyncio.run(serve(args.host, args.port, args.delay_ms, args.stats, args.speech_ends, args.turns))


if __name__ == "__main__":
    main()
