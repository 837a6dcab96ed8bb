"""A Web Push receiver: the push service and the browser in one real HTTP server.

It owns each subscription's private key and auth secret, and for every push it checks the
VAPID JWT (RFC 8292: ES256 signature by the key in ``k``, ``aud`` = this origin, ``exp``
within 24 h, a ``sub``), the TTL and Urgency headers (RFC 8030), and decrypts the aes128gcm
body (RFC 8291) with http_ece. A push that fails a check is refused and kept in
``problems``; scripted answers (410, 429 …) can be queued per subscription."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.push.keys import BrowserKeys
from tests.push.peer_server import PeerServer


@dataclass
class Push:
    subscription: str
    message: dict[str, Any]
    headers: dict[str, str]
    at: float


@dataclass
class Script:
    """Answers to give a subscription before it accepts again: (status, headers)."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    forever: tuple[int, dict[str, str]] | None = None
    body: bytes = b""  # of every scripted answer


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


class WebPushReceiver:
    def __init__(self, vapid_public_key: str) -> None:
        self.vapid_public_key = vapid_public_key
        self.keys: dict[str, BrowserKeys] = {}
        self.scripts: dict[str, Script] = {}
        self.pushes: list[Push] = []
        self.attempts: list[tuple[str, float]] = []  # every request, accepted or not
        self.problems: list[str] = []
        self.changed = asyncio.Condition()
        self.server = PeerServer(
            Starlette(routes=[Route("/push/{sid}", self.receive, methods=["POST"])])
        )

    async def start(self) -> WebPushReceiver:
        await self.server.start()
        return self

    def subscribe(self) -> dict[str, Any]:
        """A new subscription, as ``PushSubscription.toJSON()`` gives it."""
        sid = uuid.uuid4().hex
        keys = BrowserKeys.new()
        self.keys[sid] = keys
        return {
            "endpoint": f"{self.server.origin}/push/{sid}",
            "expirationTime": None,
            "keys": {"p256dh": keys.p256dh, "auth": keys.auth},
        }

    @staticmethod
    def sid_of(subscription: dict[str, Any]) -> str:
        return str(subscription["endpoint"]).rsplit("/", 1)[1]

    def received_by(self, subscription: dict[str, Any]) -> list[Push]:
        sid = self.sid_of(subscription)
        return [p for p in self.pushes if p.subscription == sid]

    def attempts_at(self, subscription: dict[str, Any]) -> list[float]:
        sid = self.sid_of(subscription)
        return [at for s, at in self.attempts if s == sid]

    async def wait_for(self, check: Any, timeout_s: float = 30) -> None:
        """Until ``check()`` is true; woken by every request."""
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(check)

    def _verify_vapid(self, authorization: str) -> str | None:
        scheme, _, params = authorization.partition(" ")
        if scheme.lower() != "vapid":
            return f"Authorization scheme {scheme!r}, not vapid"
        parts = dict(p.strip().split("=", 1) for p in params.split(","))
        if parts.get("k") != self.vapid_public_key:
            return "k is not the application server's VAPID key"
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), _b64decode(parts["k"]))
        try:
            claims = jwt.decode(
                parts["t"],
                key,
                algorithms=["ES256"],
                audience=self.server.origin,
                options={"require": ["aud", "exp", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return f"VAPID JWT refused: {exc}"
        if claims["exp"] > time.time() + 24 * 3600:
            return "VAPID exp is more than 24 hours ahead"
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            return f"VAPID sub {claims['sub']!r} is not mailto: or https:"
        return None

    async def receive(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        now = time.monotonic()
        async with self.changed:
            self.attempts.append((sid, now))
            self.changed.notify_all()
        script = self.scripts.get(sid)
        if script and (script.answers or script.forever):
            status, headers = script.answers.pop(0) if script.answers else script.forever  # type: ignore[misc]
            return Response(script.body, status_code=status, headers=headers)
        problem = self._verify_vapid(request.headers.get("authorization", ""))
        if problem is None and request.headers.get("content-encoding") != "aes128gcm":
            problem = f"Content-Encoding {request.headers.get('content-encoding')!r}"
        if problem is None and not request.headers.get("ttl", "").isdigit():
            problem = f"TTL {request.headers.get('ttl')!r}"
        if problem is None and request.headers.get("urgency") not in (
            "very-low",
            "low",
            "normal",
            "high",
        ):
            problem = f"Urgency {request.headers.get('urgency')!r}"
        keys = self.keys.get(sid)
        if problem is None and keys is None:
            return Response(b"no such subscription", status_code=404)
        message: dict[str, Any] = {}
        body = await request.body()
        if problem is None and keys is not None:
            if len(body) > 4096:
                problem = f"body of {len(body)} bytes"
            else:
                try:
                    plaintext = http_ece.decrypt(
                        body,
                        private_key=keys.private_key,
                        auth_secret=keys.auth_secret,
                        version="aes128gcm",
                    )
                    message = json.loads(plaintext)
                except Exception as exc:  # the test reports what failed
                    problem = f"cannot decrypt: {exc!r}"
        async with self.changed:
            if problem is not None:
                self.problems.append(problem)
                self.changed.notify_all()
                return Response(problem.encode(), status_code=400)
            self.pushes.append(Push(sid, message, dict(request.headers), now))
            self.changed.notify_all()
        return Response(b"", status_code=201, headers={"Location": f"/message/{uuid.uuid4()}"})

    async def close(self) -> None:
        await self.server.stop()
