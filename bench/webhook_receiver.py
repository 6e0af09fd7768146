"""A webhook receiver for the benchmark, in its own process: asyncio, HTTP/1.1 with
keep-alive, a 200 for every POST at once, except under ``/slow/`` where the answer comes
after ``--slow-seconds`` (an endpoint that times out) without holding up other connections.
Each request's ``webhook-id``, path and arrival time are kept in memory and written, one
``<id> <path> <unix time>`` line each, to ``--out`` on SIGTERM.

    python -m bench.webhook_receiver --port 8099 --out /tmp/arrivals.txt
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

ARRIVALS: list[tuple[str, str, float]] = []
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class Receiver(asyncio.Protocol):
    def __init__(self, slow_seconds: float) -> None:
        self.slow_seconds = slow_seconds
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            path = head[0].split(" ")[1]
            ARRIVALS.append((headers.get("webhook-id", "-"), path, time.time()))
            if path.startswith("/slow/"):
                asyncio.get_running_loop().call_later(self.slow_seconds, self._answer)
            else:
                self._answer()

    def _answer(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(OK)


async def serve(port: int, out: str, slow_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Receiver(slow_seconds), "127.0.0.1", port, backlog=1024
    )
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    await stopped.wait()
    server.close()
    with open(out, "w") as handle:
        handle.writelines(f"{i} {p} {t:.6f}\n" for i, p, t in ARRIVALS)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--slow-seconds", type=float, default=10.5)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.out, args.slow_seconds))


if __name__ == "__main__":
    main()
