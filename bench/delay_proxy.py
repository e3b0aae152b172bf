"""A user-space TCP proxy that adds a fixed one-way delay in each direction (no netem here).

Every chunk read from one side is written to the other side ``--delay-ms`` later, in order
(one queue and one timer per direction, so equal deadlines never swap chunks). A WebSocket
ping through it must come back ``2 x delay`` later than without it: that is the network
ground truth of the truth benchmark.

An event loop's timer fires late — asyncio rounds its poll timeout up to the next
millisecond, and a busy loop adds its own wait — so the proxy measures how much later than
due it wrote each chunk and, with ``--stats PATH``, writes that once a second per direction
("up": client to gateway, "down": back) as ``{second: [chunks, sum of ms late]}`` over
``time.monotonic()`` seconds. The truth benchmark adds it to the nominal delay.

    python -m bench.delay_proxy --listen-port 7100 --target-port 7099 --delay-ms 25 [--stats proxy.json]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import signal
from pathlib import Path

# direction -> monotonic second -> [chunks written, sum of ms written after their due time]
LATE_WRITES: dict[str, dict[int, list[float]]] = {"up": {}, "down": {}}


class _Direction(asyncio.Protocol):
    """Reads one side; writes what it read to ``peer`` after the delay."""

    def __init__(self, delay_s: float, direction: str) -> None:
        self.delay_s = delay_s
        self.late_writes = LATE_WRITES[direction]
        self.peer: asyncio.Transport | None = None
        self.transport: asyncio.Transport | None = None
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.scheduled = False
        self.closing = False
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        due = self.loop.time() + self.delay_s
        self.queue.append((due, data))
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_at(due, self._flush)

    def _flush(self) -> None:
        now = self.loop.time()
        queue = self.queue
        second = self.late_writes.setdefault(int(now), [0, 0.0])
        while queue and queue[0][0] <= now:
            due, data = queue.popleft()
            if self.peer is not None and not self.peer.is_closing():
                self.peer.write(data)
                second[0] += 1
                second[1] += (now - due) * 1000.0
        if queue:
            self.loop.call_at(queue[0][0], self._flush)
        else:
            self.scheduled = False
            if self.closing and self.peer is not None:
                self.peer.close()

    def connection_lost(self, exc) -> None:
        self.closing = True
        if not self.queue and self.peer is not None:
            self.loop.call_later(self.delay_s, self.peer.close)


async def _accept(reader_protocol: _Direction, target: tuple[str, int], delay_s: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        upstream_transport, upstream = await loop.create_connection(lambda: _Direction(delay_s, "down"), *target)
    except OSError:
        if reader_protocol.transport is not None:
            reader_protocol.transport.close()
        return
    reader_protocol.peer = upstream_transport
    upstream.peer = reader_protocol.transport


def _write_stats(path: Path) -> None:
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(LATE_WRITES), encoding="utf-8")
    partial.replace(path)  # a reader never sees half a file


async def _write_stats_every_second(path: Path) -> None:
    while True:
        await asyncio.sleep(1.0)
        _write_stats(path)


async def serve(listen: tuple[str, int], target: tuple[str, int], delay_ms: float, stats: Path | None = None) -> None:
    loop = asyncio.get_running_loop()
    delay_s = delay_ms / 1000.0
    if stats is not None:
        writer = loop.create_task(_write_stats_every_second(stats))

    def factory() -> _Direction:
        protocol = _Direction(delay_s, "up")
        original = protocol.connection_made

        def connection_made(transport) -> None:
            original(transport)
            transport.pause_reading()  # until the upstream connection exists

            async def connect() -> None:
                await _accept(protocol, target, delay_s)
                if not transport.is_closing():
                    transport.resume_reading()

            loop.create_task(connect())

        protocol.connection_made = connection_made  # type: ignore[method-assign]
        return protocol

    server = await loop.create_server(factory, *listen, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"delay proxy {listen[0]}:{listen[1]} -> {target[0]}:{target[1]}, +{delay_ms:g} ms each way", flush=True)
    await stop.wait()
    server.close()
    if stats is not None:
        writer.cancel()
        _write_stats(stats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--target-host", default="127.0.0.1")
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--stats", type=Path, default=None, help="write how late each direction's writes were, every second")
    args = parser.parse_args(argv)
    asyncio.run(serve((args.listen_host, args.listen_port), (args.target_host, args.target_port), args.delay_ms,
                      args.stats))


if __name__ == "__main__":
    main()
