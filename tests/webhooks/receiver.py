"""A receiving peer for outbound webhooks: an HTTP server on 127.0.0.1 that verifies every
request with the ``standardwebhooks`` package (against any of the secrets it holds), counts
requests by ``webhook-id``, keeps each verified body, and answers as the test says (200,
503, 410 …). Tests wait on its events, never on a clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from tests.helpers import free_port


class Receiver:
    def __init__(self, path: str = "/hook") -> None:
        self.path = path
        self.port = free_port()
        self.secrets: list[str] = []
        self.answer = 200
        self.requests: Counter[str] = Counter()  # webhook-id -> requests received
        self.accepted: dict[str, dict[str, Any]] = {}  # webhook-id -> body, answered 2xx
        self.bodies: dict[str, dict[str, Any]] = {}  # webhook-id -> body, any answer
        self.unverified = 0
        self.ids_by_answer: Counter[int] = Counter()
        # Close each connection after its answer: the sender's next request connects (and
        # resolves, and checks) afresh.
        self.close_connections = False
        # While set, requests are held before they are answered (``held`` counts them),
        # once ``hold_from`` have been accepted: decided as each request comes, so none
        # slips past between a test's wake-up and its setting the gate.
        self.gate: asyncio.Event | None = None
        self.hold_from = 0
        self.held = 0
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post(self.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def verifies(self, body: bytes, headers: dict[str, str]) -> bool:
        for secret in self.secrets:
            with contextlib.suppress(WebhookVerificationError):
                Webhook(secret).verify(body, headers)
                return True
        return False

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        webhook_id = headers.get("webhook-id", "")
        if not self.verifies(body, headers):
            self.unverified += 1
            self._changed.set()
            return web.Response(status=400, text="signature does not verify")
        self.requests[webhook_id] += 1
        parsed = orjson.loads(body)
        self.bodies[webhook_id] = parsed
        if (
            self.gate is not None
            and not self.gate.is_set()
            and len(self.accepted) >= self.hold_from
        ):
            self.held += 1
            self._changed.set()
            await self.gate.wait()
        answer = self.answer
        self.ids_by_answer[answer] += 1
        if 200 <= answer < 300:
            self.accepted[webhook_id] = parsed
        self._changed.set()
        headers = {"Connection": "close"} if self.close_connections else None
        return web.Response(status=answer, text=f"answered {answer}", headers=headers)

    async def wait_for(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Until ``check()`` holds, re-checked at each request received."""
        async with asyncio.timeout(timeout_s):
            while not check():
                self._changed.clear()
                if check():
                    return
                try:
                    await self._changed.wait()
                except asyncio.CancelledError:
                    raise
        return

    def events_of(self, notification_id: str) -> list[dict[str, Any]]:
        return sorted(
            (
                b
                for b in self.accepted.values()
                if b["data"].get("notification_id") == notification_id
            ),
            key=lambda b: b["data"]["sequence"],
        )
