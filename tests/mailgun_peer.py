"""A local Mailgun-compatible peer: POST /v3/<domain>/messages.mime, as Mailgun documents it
(HTTP Basic auth with user "api" and the API key; multipart/form-data with the recipients in
``to`` and the MIME message in ``message``). It checks what it receives, keeps the messages,
and answers like Mailgun: {"id": "<…>", "message": "Queued. Thank you."}."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.helpers import free_port, wait_for_condition
from tidings.runner import Server


@dataclass
class MailgunPeer:
    api_key: str
    domain: str
    port: int = field(default_factory=free_port)
    received: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    arrivals: asyncio.Queue[EmailMessage] = field(default_factory=asyncio.Queue)
    problems: list[str] = field(default_factory=list)
    server: Server | None = None
    task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v3/{domain}/messages.mime")
        async def send(domain: str, request: Request) -> JSONResponse:
            expected = "Basic " + base64.b64encode(f"api:{self.api_key}".encode()).decode()
            if request.headers.get("authorization") != expected:
                self.problems.append("bad auth")
                return JSONResponse({"message": "Forbidden"}, 401)
            if domain != self.domain:
                self.problems.append(f"domain {domain}")
                return JSONResponse({"message": "Domain not found"}, 404)
            content_type = request.headers.get("content-type", "")
            if not content_type.startswith("multipart/form-data"):
                self.problems.append(f"content type {content_type}")
                return JSONResponse({"message": "not multipart"}, 400)
            form = email.message_from_bytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + await request.body(),
                policy=email.policy.default,
            )
            fields: dict[str, list[bytes]] = {}
            for part in form.iter_parts():
                name = part.get_param("name", header="content-disposition")
                if part.get_content_type() == "message/rfc822":
                    value = part.get_payload(0).as_bytes()  # parsed already: the inner message
                else:
                    value = part.get_payload(decode=True) or b""
                fields.setdefault(str(name), []).append(value)
            if "to" not in fields or "message" not in fields:
                self.problems.append(f"fields {sorted(fields)}")
                return JSONResponse({"message": "'to' and 'message' are required"}, 400)
            message = email.message_from_bytes(fields["message"][0], policy=email.policy.default)
            to = [v.decode() for v in fields["to"]]
            self.received.append((to, message))  # type: ignore[arg-type]
            self.arrivals.put_nowait(message)  # type: ignore[arg-type]
            return JSONResponse(
                {"id": f"<{uuid.uuid4().hex}@{self.domain}>", "message": "Queued. Thank you."}
            )

        return app

    async def start(self) -> MailgunPeer:
        self.server = Server(
            uvicorn.Config(self.app(), host="127.0.0.1", port=self.port, log_config=None)
        )
        self.task = asyncio.create_task(self.server.serve())
        server = self.server

        async def listening() -> bool:
            return bool(server.started)  # uvicorn sets it once it listens

        await wait_for_condition(listening, timeout_s=10, what="the Mailgun peer listening")
        return self

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
