"""An FCM-compatible peer: Google's OAuth2 token endpoint and FCM HTTP v1's messages:send.

The token endpoint verifies the service account's JWT assertion (RS256 signature by the
account's key, ``aud`` = the token URI, the firebase.messaging scope, ``iss``) before it
issues a token with ``expires_in``; messages:send checks the bearer token (issued here, not
expired) and the message's fields, and answers like FCM (google.rpc.Status errors)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.push.keys import ServiceAccountKey
from tests.push.peer_server import PeerServer

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


@dataclass
class Sent:
    message: dict[str, Any]
    bearer: str
    at: float


def fcm_error_body(
    code: int, status: str, error_code: str | None, message: str, field: str | None = None
) -> dict[str, Any]:
    """A google.rpc.Status as FCM answers it; ``field``: a BadRequest field violation."""
    details: list[dict[str, Any]] = []
    if error_code:
        details.append({"@type": FCM_ERROR, "errorCode": error_code})
    if field:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        )
    return {"error": {"code": code, "message": message, "status": status, "details": details}}


def fcm_error(code: int, status: str, error_code: str, message: str) -> JSONResponse:
    return JSONResponse(fcm_error_body(code, status, error_code, message), status_code=code)


class FcmPeer:
    def __init__(self, project_id: str = "tidings-test", token_lifetime_s: float = 3600) -> None:
        self.project_id = project_id
        self.token_lifetime_s = token_lifetime_s
        self.account = ServiceAccountKey.new()
        self.tokens: dict[str, float] = {}  # access token -> expires at (monotonic)
        self.token_requests = 0
        self.refused_bearers = 0
        self.unregistered: set[str] = set()  # device tokens answered UNREGISTERED
        # Answers to give a device token before it is accepted: (status, JSON body, headers).
        self.scripts: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = {}
        self.attempts: list[tuple[str, float]] = []  # (device token, when) of every send
        self.sent: list[Sent] = []
        self.problems: list[str] = []
        self.changed = asyncio.Condition()
        self.server = PeerServer(
            Starlette(
                routes=[
                    Route("/token", self.token, methods=["POST"]),
                    Route("/v1/projects/{project}/messages:send", self.send, methods=["POST"]),
                ]
            )
        )

    async def start(self) -> FcmPeer:
        await self.server.start()
        return self

    @property
    def token_uri(self) -> str:
        return f"{self.server.origin}/token"

    def service_account_json(self) -> str:
        return self.account.json(self.token_uri, self.project_id)

    def expire_all(self) -> None:
        """Every token issued so far stops working (as if revoked)."""
        self.tokens.clear()

    def attempts_at(self, device_token: str) -> list[float]:
        return [at for token, at in self.attempts if token == device_token]

    def sent_to(self, device_token: str) -> list[Sent]:
        return [s for s in self.sent if s.message.get("token") == device_token]

    async def wait_for(self, check: Any, timeout_s: float = 30) -> None:
        async with asyncio.timeout(timeout_s), self.changed:
            await self.changed.wait_for(check)

    async def _problem(self, problem: str, status: int = 400) -> JSONResponse:
        async with self.changed:
            self.problems.append(problem)
            self.changed.notify_all()
        return JSONResponse({"error": problem}, status_code=status)

    async def token(self, request: Request) -> JSONResponse:
        # application/x-www-form-urlencoded, read by hand (no python-multipart here).
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return await self._problem(f"grant_type {form.get('grant_type')!r}")
        try:
            claims = jwt.decode(
                str(form.get("assertion")),
                self.account.private_key.public_key(),
                algorithms=["RS256"],
                audience=self.token_uri,
                options={"require": ["iss", "aud", "exp", "iat", "scope"]},
            )
        except jwt.PyJWTError as exc:
            return await self._problem(f"assertion refused: {exc}")
        if claims["iss"] != self.account.client_email:
            return await self._problem(f"iss {claims['iss']!r}")
        if SCOPE not in str(claims["scope"]).split():
            return await self._problem(f"scope {claims['scope']!r}")
        if claims["exp"] - claims["iat"] > 3600:
            return await self._problem("assertion valid for more than an hour")
        access = f"ya29.{uuid.uuid4().hex}"
        async with self.changed:
            self.tokens[access] = time.monotonic() + self.token_lifetime_s
            self.token_requests += 1
            self.changed.notify_all()
        return JSONResponse(
            {"access_token": access, "expires_in": self.token_lifetime_s, "token_type": "Bearer"}
        )

    def _check_message(self, message: dict[str, Any]) -> str | None:
        notification = message.get("notification") or {}
        if not message.get("token") or not notification.get("title"):
            return "message.token and message.notification.title are required"
        data = message.get("data") or {}
        if not all(isinstance(v, str) for v in data.values()):
            return "message.data values must be strings"
        link = ((message.get("webpush") or {}).get("fcm_options") or {}).get("link")
        if link is not None and not str(link).startswith("https://"):
            return "webpush.fcm_options.link must be https"
        if "android" in message and not str(message["android"].get("ttl", "0s")).endswith("s"):
            return "android.ttl must be a duration"
        return None

    async def send(self, request: Request) -> JSONResponse:
        if request.path_params["project"] != self.project_id:
            return fcm_error(404, "NOT_FOUND", "UNSPECIFIED_ERROR", "unknown project")
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        expires_at = self.tokens.get(bearer)
        if scheme != "Bearer" or expires_at is None or expires_at < time.monotonic():
            async with self.changed:
                self.refused_bearers += 1
                self.changed.notify_all()
            return JSONResponse(
                {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "bad token"}},
                status_code=401,
            )
        body = await request.json()
        message = body.get("message") or {}
        problem = self._check_message(message)
        if problem is not None:
            return await self._problem(problem)
        async with self.changed:
            self.attempts.append((message["token"], time.monotonic()))
            self.changed.notify_all()
        script = self.scripts.get(message["token"])
        if script:
            status, answer, headers = script.pop(0)
            return JSONResponse(answer, status_code=status, headers=headers)
        if message["token"] in self.unregistered:
            return fcm_error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.")
        async with self.changed:
            self.sent.append(Sent(message, bearer, time.monotonic()))
            self.changed.notify_all()
        return JSONResponse({"name": f"projects/{self.project_id}/messages/{uuid.uuid4().hex}"})

    async def close(self) -> None:
        await self.server.stop()
