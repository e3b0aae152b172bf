"""``python -m gateway --host 127.0.0.1 --port 7090``: run the reference voice-gateway.

SIGTERM or SIGINT closes every session with 1001 (going away) and exits 0; ``--help``
lists the options (network, end of utterance, pipeline, reply format, faults, logs).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence

from gateway.config import GatewayConfig, configure_logging, parse_args
from gateway.server import Gateway


async def serve(config: GatewayConfig) -> None:
    gateway = Gateway(config)
    await gateway.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, gateway.close)
    await gateway.wait_closed()


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    configure_logging(config)
    try:
        asyncio.run(serve(config))
    except OSError as error:  # the port is taken, the address is not ours...
        print(f"gateway: cannot listen on {config.host}:{config.port}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
