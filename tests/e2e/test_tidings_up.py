"""End to end: ``tidings up`` as a real OS process, on the real infrastructure (five
supervised processes) and on the embedded default (one process, nothing configured)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.credentials import ADMIN, ENV
from tests.helpers import assert_envelope, free_port, wait_for_condition
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.smtp_peer import SmtpPeer

pytestmark = pytest.mark.e2e
SERVICES = ("gateway", "users", "templates", "email", "push")


class Tidings:
    """``given_credentials`` False: none of the test credentials in the environment, so that
    ``tidings up`` makes (and, embedded, keeps) its own; the client then uses the kept key."""

    def __init__(self, tmp: Path, *, given_credentials: bool = True, **env: str) -> None:
        self.ports = {s: free_port() for s in SERVICES}
        self.log = tmp / "tidings.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        self.env |= {f"TIDINGS_{s.upper()}_PORT": str(p) for s, p in self.ports.items()}
        self.env |= {
            "TIDINGS_DATA_DIR": str(tmp / "data"),
            "TIDINGS_SMTP_CAPTURE_PORT": str(free_port()),
        }
        self.env |= (ENV if given_credentials else {}) | env
        self.proc: asyncio.subprocess.Process | None = None
        self.client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.ports['gateway']}",
            timeout=10,
            headers=ADMIN if given_credentials else {},
        )

    @property
    def data_dir(self) -> Path:
        return Path(self.env["TIDINGS_DATA_DIR"])

    def kept(self) -> dict[str, str]:
        """The credentials the embedded default kept."""
        return dict(json.loads((self.data_dir / "credentials.json").read_text()))

    async def start(self, *args: str) -> None:
        with self.log.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tidings", "up", *args, env=self.env, stdout=log, stderr=log
            )
        await wait_for_condition(self.healthy, timeout_s=60, what="every service healthy")

    async def health(self, service: str) -> dict[str, Any]:
        answer = await self.client.get(f"http://127.0.0.1:{self.ports[service]}/health")
        assert_envelope(answer.json(), success=answer.status_code == 200)
        return dict(answer.json()["data"])

    async def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"tidings up exited: {self.log.read_text()[-3000:]}")
        for service in SERVICES:
            if (await self.health(service))["status"] != "ok":
                return False
        return True

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        await self.client.aclose()
        return code


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpPeer]:
    peer = await SmtpPeer().start()
    yield peer
    await peer.stop()


async def the_email_scenario(
    gw: httpx.AsyncClient, next_mail: Callable[[], Awaitable[EmailMessage]]
) -> str:
    """Create a user and a template through the gateway, send, receive, see it delivered;
    repeat the request (no second email), conflict (409), fence. Returns the notification id."""
    user = await create_user(gw, name="Katherine Johnson")
    template = await create_template(gw)
    body = notification(
        user["user_id"],
        template["code"],
        variables={"name": "Katherine", "link": "https://nasa.example/go"},
    )
    answer = await gw.post(
        "/api/v1/notifications/", json=body, headers={"X-Correlation-ID": "corr-e2e-1"}
    )
    assert answer.status_code == 202, answer.text
    nid = answer.json()["data"]["notification_id"]

    msg = await next_mail()
    assert msg["To"] == f"Katherine Johnson <{user['email']}>"
    assert msg["Subject"] == "Welcome, Katherine!"
    assert msg["Message-ID"] == f"<{nid}@tidings.localhost>"
    assert msg["X-Request-ID"] == body["request_id"]
    assert msg["X-Correlation-ID"] == "corr-e2e-1"
    assert (
        msg.get_body(("plain",)).get_content().replace("\r\n", "\n").split("\n--\n")[0].strip()
        == "Hello Katherine, start here: https://nasa.example/go"
    )
    assert '<a href="https://nasa.example/go">' in msg.get_body(("html",)).get_content()
    await wait_for_status(gw, nid, "delivered")

    again = await gw.post("/api/v1/notifications/", json=body)
    assert again.status_code == 202 and again.json()["data"]["notification_id"] == nid
    conflict = await gw.post("/api/v1/notifications/", json={**body, "priority": 9})
    assert conflict.status_code == 409
    fence = notification(user["user_id"], template["code"])
    fenced = await gw.post("/api/v1/notifications/", json=fence)
    assert fenced.status_code == 202
    assert (await next_mail())["X-Request-ID"] == fence["request_id"], (
        "the repeat sent a second email"
    )
    # The worker acknowledges after reporting: once delivered is recorded, nothing is in flight.
    await wait_for_status(gw, fenced.json()["data"]["notification_id"], "delivered")
    return str(nid)


async def test_five_processes_on_postgres_rabbitmq_redis(
    tmp_path: Path,
    fresh_pg: str,
    amqp_vhost: str,
    redis_url: str,
    cache_namespace: str,
    smtp: SmtpPeer,
) -> None:
    tidings = Tidings(
        tmp_path,
        TIDINGS_DATABASE_URL=fresh_pg,
        TIDINGS_AMQP_URL=amqp_vhost,
        TIDINGS_REDIS_URL=redis_url,
        TIDINGS_CACHE_NAMESPACE=cache_namespace,
        TIDINGS_SMTP_URL=smtp.url,
    )
    await tidings.start()
    try:
        pids = {s: (await tidings.health(s))["pid"] for s in SERVICES}
        assert tidings.proc is not None
        assert len(set(pids.values())) == 5 and tidings.proc.pid not in pids.values()

        # Once every service answers, the supervisor says so, with where to go.
        async def announced() -> bool:
            return (
                "Tidings is up (gateway, users, templates, email, push" in tidings.log.read_text()
            )

        await wait_for_condition(announced, timeout_s=30, what="the start banner")
        assert (
            f"Gateway    http://127.0.0.1:{tidings.ports['gateway']}\n" in tidings.log.read_text()
        )
        assert "Admin key  the one in TIDINGS_ADMIN_API_KEY" in tidings.log.read_text()

        async def next_mail() -> EmailMessage:
            return (await smtp.next()).message

        await the_email_scenario(tidings.client, next_mail)
        assert smtp.arrivals.empty()
        # The correlation id crossed HTTP and AMQP into the email worker's JSON log lines.
        lines = [json.loads(x) for x in tidings.log.read_text().splitlines() if x.startswith("{")]
        assert any(
            x.get("service") == "email" and x.get("correlation_id") == "corr-e2e-1" for x in lines
        )

        # A crashed service is restarted by the supervisor, and mail flows again.
        os.kill(pids["email"], signal.SIGKILL)

        async def restarted() -> bool:
            return (await tidings.health("email"))["pid"] != pids["email"]

        await wait_for_condition(restarted, timeout_s=30, what="email worker restarted")
        user = await create_user(tidings.client)
        template = await create_template(tidings.client)
        body = notification(user["user_id"], template["code"])
        assert (await tidings.client.post("/api/v1/notifications/", json=body)).status_code == 202
        assert (await smtp.next()).message["X-Request-ID"] == body["request_id"]
        new_pids = {s: (await tidings.health(s))["pid"] for s in SERVICES}
    finally:
        code = await tidings.stop()
    assert code == 0, tidings.log.read_text()[-3000:]
    for pid in new_pids.values():  # every child stopped with the supervisor
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_embedded_default_with_nothing_configured(tmp_path: Path) -> None:
    tidings = Tidings(tmp_path)
    await tidings.start()
    try:
        pids = {(await tidings.health(s))["pid"] for s in SERVICES}
        assert pids == {tidings.proc.pid if tidings.proc else -1}, "embedded: one process"
        seen = 0

        async def mailbox() -> list[dict[str, Any]]:
            out = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tidings",
                "mail",
                "--json",
                env=tidings.env,
                stdout=asyncio.subprocess.PIPE,
            )
            stdout, _ = await out.communicate()
            return list(json.loads(stdout))

        async def next_mail() -> EmailMessage:
            nonlocal seen

            async def arrived() -> list[dict[str, Any]] | None:
                items = await mailbox()
                return items if len(items) > seen else None

            items = await wait_for_condition(arrived, timeout_s=30, what="captured mail")
            seen += 1
            item = items[seen - 1]
            path = Path(tidings.env["TIDINGS_DATA_DIR"]) / "mailbox" / item["file"]
            import email
            import email.policy

            return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[return-value]

        await the_email_scenario(tidings.client, next_mail)
        assert len(await mailbox()) == 2
        assert (Path(tidings.env["TIDINGS_DATA_DIR"]) / "gateway.db").exists()
    finally:
        code = await tidings.stop()
    assert code == 0, tidings.log.read_text()[-3000:]
