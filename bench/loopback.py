#!/usr/bin/env python3
"""A minimal OpenAI-compatible chat-completions server on 127.0.0.1, for benchmarks.

Runs in its own process (so it never shares a GIL with what is measured), on asyncio with HTTP/1.1
keep-alive. Each response is written headers and body at once with TCP_NODELAY set: otherwise
Nagle's algorithm delays every answer on a reused connection by ~40 ms and distorts both sides.
Every request waits `--delay` seconds, then gets a fixed answer with usage. It prints its port on
stdout, then serves until stdin closes or it is killed; with `--arrivals` it also prints
`arrival <epoch seconds>` as each request has been read.

    python bench/loopback.py --delay 0.2        # prints e.g. 40121

`Loopback(delay)` starts it from another script (a context manager); `base_url` is for `api_base`.
Traffic stays on 127.0.0.1, and the server stops when its parent does (stdin reaches EOF).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

REPLY = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "model": "bench",
    "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
}
ARRIVALS = "--arrivals" in sys.argv  # print `arrival <epoch seconds>` on stdout per request


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = json.dumps(REPLY).encode()
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            if ARRIVALS:
                print(f"arrival {time.time():.6f}", flush=True)
            await asyncio.sleep(delay)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(delay: float) -> None:
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, delay), "127.0.0.1", 0, backlog=4096, limit=1 << 20
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until our parent goes away
    server.close()


class Loopback:
    """The server in a child process, for the duration of a `with` block."""

    def __init__(self, delay: float, arrivals: bool = False) -> None:
        self.delay = delay
        self.arrivals = arrivals
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> Loopback:
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--delay", str(self.delay)]
            + (["--arrivals"] if self.arrivals else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self.port = int(self._proc.stdout.readline())
        return self

    def next_arrival(self) -> float:
        """When the next request arrived (epoch seconds); needs `arrivals=True`."""
        assert self._proc is not None and self._proc.stdout is not None
        return float(self._proc.stdout.readline().split()[1])

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--delay", type=float, default=0.2, help="seconds before each answer")
    parser.add_argument("--arrivals", action="store_true", help="print each request's arrival time")
    args = parser.parse_args()
    asyncio.run(serve(args.delay))
    return 0


if __name__ == "__main__":
    sys.exit(main())
