"""The fault proxy itself, against the machine's Redis: forwards, refuses when cut, hangs when
stalled, and forwards again on the same port when restored."""

from __future__ import annotations

import asyncio

import pytest

from tests.faults.proxy import TcpProxy


async def _ping(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        return await reader.readline()
    finally:
        writer.close()


async def test_forwards_cuts_stalls_and_restores() -> None:
    async with TcpProxy(6379) as proxy:
        assert proxy.url("redis://127.0.0.1:6379/0") == f"redis://127.0.0.1:{proxy.port}/0"
        assert await asyncio.wait_for(_ping(proxy.port), 5) == b"+PONG\r\n"

        await proxy.cut()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.wait_for(_ping(proxy.port), 5)

        await proxy.restore()
        assert await asyncio.wait_for(_ping(proxy.port), 5) == b"+PONG\r\n"

        # An open connection that stalls: the reply waits until the proxy flows again.
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        proxy.stall()
        writer.write(b"PING\r\n")
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readline(), 0.5)
        await proxy.restore()
        assert await asyncio.wait_for(reader.readline(), 5) == b"+PONG\r\n"
        writer.close()
        assert proxy.connections == 3  # the refused one never arrived
