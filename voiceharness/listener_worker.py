"""One reply-listener worker process, driven over its stdin/stdout by :mod:`voiceharness.listener_pool`.

::

    python -m voiceharness.listener_worker --expectations smartjarvis [--method lm]

The pipe protocol, both directions length-prefixed (big-endian unsigned 32-bit lengths)::

    request  (stdin):  >II (header length, PCM length) + JSON header + PCM16 LE mono bytes
                       header: {"id": 7, "sample_rate_hz": 22050, "request_text": "echo hi"}
    response (stdout): >I (JSON length) + JSON
                       first, once: {"ready": true, "pid": 1234}  (or {"ready": false, "error": "..."})
                       then one per request, in order:
                       {"id": 7, "intent": "ECHO", "transcript": "...", "scores": {...},
                        "decode_ms": 41.2, "score": 0.98, "runner_up": "GREETING", ...}
                       (the fields of voiceharness.listener.Heard)  or  {"id": 7, "error": "..."}

The worker ends when its stdin closes. It writes nothing else to stdout (Python's own
``print`` goes to stderr here), so a stray message cannot corrupt the pipe.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import struct
import sys
from typing import BinaryIO

REQUEST_PREFIX = struct.Struct(">II")
RESPONSE_PREFIX = struct.Struct(">I")
# A reply longer than this (about 10 minutes at 48 kHz) is not a voice reply: refuse it.
MAX_PCM_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 1024 * 1024
# A worker runs this much nicer than the load generator that started it.
NICENESS = 5


def encode_request(job_id: int, pcm: bytes, sample_rate_hz: int, request_text: str) -> bytes:
    header = json.dumps({"id": job_id, "sample_rate_hz": sample_rate_hz, "request_text": request_text}).encode()
    return REQUEST_PREFIX.pack(len(header), len(pcm)) + header + pcm


def encode_response(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return RESPONSE_PREFIX.pack(len(body)) + body


def read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    """``size`` bytes from a pipe, or None at end of file (a short read at EOF is None too)."""
    chunks = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_response(stream: BinaryIO) -> dict | None:
    """One response message from a worker's stdout, or None when the worker has gone."""
    prefix = read_exactly(stream, RESPONSE_PREFIX.size)
    if prefix is None:
        return None
    body = read_exactly(stream, RESPONSE_PREFIX.unpack(prefix)[0])
    return None if body is None else json.loads(body)


def _serve(expectations: str, method: str, requests: BinaryIO, responses: BinaryIO) -> int:
    def send(message: dict) -> None:
        responses.write(encode_response(message))
        responses.flush()

    try:
        from voiceharness.listener import ReplyListener

        listener = ReplyListener(expectations, method=method)
        listener.warm_up()
    except Exception as error:  # noqa: BLE001 - the pool reports why the worker could not start
        send({"ready": False, "error": f"{type(error).__name__}: {error}"})
        return 2
    send({"ready": True, "pid": os.getpid()})
    while True:
        prefix = read_exactly(requests, REQUEST_PREFIX.size)
        if prefix is None:
            return 0
        header_bytes, pcm_bytes = REQUEST_PREFIX.unpack(prefix)
        if header_bytes > MAX_HEADER_BYTES or pcm_bytes > MAX_PCM_BYTES:
            send({"id": None, "error": f"request too large ({header_bytes} + {pcm_bytes} bytes); stopping"})
            return 3
        header = read_exactly(requests, header_bytes)
        pcm = read_exactly(requests, pcm_bytes)
        if header is None or pcm is None:
            return 0
        job = json.loads(header)
        try:
            heard = listener.hear(pcm, int(job["sample_rate_hz"]), request_text=job.get("request_text", ""))
        except Exception as error:  # noqa: BLE001 - one bad reply must not end the worker
            send({"id": job.get("id"), "error": f"{type(error).__name__}: {error}"})
            continue
        send({"id": job.get("id"), **dataclasses.asdict(heard)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Reply-listener worker (driven by voiceharness.listener_pool)")
    parser.add_argument("--expectations", required=True, help='"smartjarvis", "reference" or a JSON file')
    parser.add_argument("--method", default=None, help="transcription method (default: the listener's)")
    args = parser.parse_args(argv)
    from voiceharness.listener import DEFAULT_METHOD

    # Judging is best effort (a reply not heard in time is counted, never waited for); streaming
    # at real-time pace is not: the load generator gets the CPU first.
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    # The protocol owns the pipe that was file descriptor 1: anything printed afterwards, by
    # Python or by pocketsphinx's C code, goes to stderr instead.
    responses = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return _serve(args.expectations, args.method or DEFAULT_METHOD, sys.stdin.buffer, responses)


if __name__ == "__main__":
    sys.exit(main())
