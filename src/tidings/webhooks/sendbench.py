"""A micro-benchmark of the webhooks worker's sender alone: CPU per event of
``tidings.webhooks.sender.Sender.send`` against the benchmark's receiver
(``tidings.bench.hooks``, a process of its own so its CPU is not counted), on uvloop as the
worker runs.

``python -m tidings.webhooks.sendbench -n 3000 -c 50`` prints one line: events, concurrency,
wall time, events/s and this process's CPU (user + system) per event. Only ``Sender``'s
constructor, ``send`` and ``close`` are used, so the same file measures another revision's
sender: ``PYTHONPATH=<other checkout>/src python -P src/tidings/webhooks/sendbench.py …``
(``-P``: this file's folder, where ``secrets.py`` is, not on the path)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import socket
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import orjson
import uvloop

from tidings.webhooks.attempts import Claimed
from tidings.webhooks.secrets import SecretBox, new_secret
from tidings.webhooks.sender import Sender


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _listening(port: int, limit_s: float = 30.0) -> None:
    async with asyncio.timeout(limit_s):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


def _message(i: int) -> Claimed:
    now = dt.datetime.now(dt.UTC)
    body = {
        "type": "notification.delivered",
        "timestamp": now.isoformat(),
        "data": {"notification_id": str(uuid.uuid4()), "status": "delivered", "sequence": i},
    }
    return Claimed(i, uuid.uuid4(), f"msg_{uuid.uuid4().hex}", orjson.dumps(body), 0, now, now)


async def _run(n: int, concurrency: int, port: int) -> str:
    box = SecretBox("bench")
    endpoint = SimpleNamespace(
        url=f"http://127.0.0.1:{port}/hook",
        secret=box.seal(new_secret()),
        previous_secret=None,
        previous_until=None,
    )
    sender = Sender(box, allow_insecure=True, timeout_s=10.0, response_bytes=4096)
    messages = [_message(i) for i in range(n)]
    slots = asyncio.Semaphore(concurrency)
    codes: dict[int | None, int] = {}

    async def one(message: Claimed) -> None:
        async with slots:
            outcome = await sender.send(message, endpoint)
        codes[outcome.status_code] = codes.get(outcome.status_code, 0) + 1

    await asyncio.gather(*(one(m) for m in messages[:concurrency]))  # connections opened
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(m) for m in messages))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await sender.close()
    return (
        f"{n} events -c {concurrency}: {wall:.2f} s, {n / wall:.0f}/s, "
        f"CPU {cpu / n * 1e6:.0f} µs/event; answers {codes}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("-c", type=int, default=50)
    args = parser.parse_args()
    port = _free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "tidings.bench.hooks", "--port", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        line: list[str] = []

        async def both() -> None:
            await _listening(port)
            line.append(await _run(args.n, args.c, port))

        uvloop.run(both())
        print(line[0])
    finally:
        assert receiver.stdin is not None
        receiver.stdin.close()
        receiver.wait(timeout=30)


if __name__ == "__main__":
    main()
