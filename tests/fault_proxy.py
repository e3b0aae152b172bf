"""A TCP proxy on loopback that delays what passes through it, for latency fault tests.

``tc netem`` is not in this kernel (see NOTES-faults.md); a user-space proxy gives the same
delay and needs no root::

    with DelayProxy(("10.213.5.2", 7090), upstream_delay_ms=50) as proxy:
        ...  # connect to 127.0.0.1:proxy.port

Every chunk read from one side is written to the other ``delay_ms`` after it arrived, in
order, so a ping → pong round trip grows by ``upstream_delay_ms + downstream_delay_ms``.
The proxy buffers what is in flight (delay × rate: 50 ms of a 256 kbit/s stream is 1.6 KB).
TCP cannot lose data; packet loss is added underneath with nft in a namespace (tests/netns.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Self


class DelayProxy:
    def __init__(self, target: tuple[str, int], *, upstream_delay_ms: float = 0.0,
                 downstream_delay_ms: float = 0.0, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = target
        self.upstream_delay_s = upstream_delay_ms / 1000
        self.downstream_delay_s = downstream_delay_ms / 1000
        self.host = host
        self.port = port
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("delay proxy did not start")
        return self

    def __exit__(self, *_exc) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, self.host, self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            self._loop.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.wait_for(asyncio.open_connection(*self.target), 10)
        except (OSError, TimeoutError):
            client_writer.close()
            return
        await asyncio.gather(
            self._pipe(client_reader, server_writer, self.upstream_delay_s),
            self._pipe(server_reader, client_writer, self.downstream_delay_s),
            return_exceptions=True,
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float) -> None:
        queue: asyncio.Queue = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    writer.close()
                    return
                writer.write(data)
                await writer.drain()

        delivery = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(65536)
                queue.put_nowait((time.monotonic() + delay_s, data))
                if not data:
                    break
            await delivery
        except (ConnectionError, OSError):
            delivery.cancel()
            writer.close()
