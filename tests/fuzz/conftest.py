"""The five services for the fuzzer: in this process, as real HTTP servers on real
PostgreSQL, RabbitMQ and Redis (tests/system.py), on an event loop of their own in a thread,
because Hypothesis drives Schemathesis synchronously and its calls would otherwise block
the loop the servers run on."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import RUN_ID, _database_url, _pg, _vhost
from tests.credentials import ADMIN
from tests.scenario import WELCOME
from tests.system import System, start_system
from tidings.cli.vapid import generate_vapid_keys
from tidings.gateway.schemas import NotificationCreate


class BackgroundSystem:
    """``start_system`` on a loop in a thread, stopped cleanly at the end."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzzed", daemon=True)
        self.system: System | None = None

    def run(self, coroutine: Any, timeout_s: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def __enter__(self) -> BackgroundSystem:
        self.thread.start()
        self.system = self.run(start_system(**self.settings), 120)
        return self

    def __exit__(self, *_: object) -> None:
        try:
            if self.system is not None:
                self.run(self.system.close(), 90)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()

    def url(self, service: str) -> str:
        assert self.system is not None
        return f"http://127.0.0.1:{self.system.ports[service]}"


@pytest.fixture(scope="package")
def fuzz_database() -> Iterator[str]:
    """A database of the fuzzed system's own. On the run's shared database its outbox relay
    (polling for due rows) took scheduled notifications of later test modules' systems and
    published them to its own broker, where no worker of theirs consumed them."""
    name = f"tidings_test_{RUN_ID}_fuzz"
    _pg(f'CREATE DATABASE "{name}"')
    try:
        yield _database_url(name)
    finally:
        _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Package scope: the fuzzed system stops when tests/fuzz is done, not at the end of the run.
@pytest.fixture(scope="package")
def fuzzed(
    fuzz_database: str, redis_url: str, cache_namespace_session: str, amqp_vhost_session: str
) -> Iterator[BackgroundSystem]:
    private, public = generate_vapid_keys()
    with BackgroundSystem(
        database_url=fuzz_database,
        amqp_url=amqp_vhost_session,
        redis_url=redis_url,
        cache_namespace=cache_namespace_session,
        # Configured, so the fuzzer reaches these routes' handlers, not only their 403/404.
        mailgun_webhook_signing_key="fuzz-signing-key-0123456789",
        vapid_private_key=private,
        vapid_public_key=public,
        vapid_subject="mailto:ops@tidings.example",
    ) as background:
        yield background


@pytest.fixture(scope="package")
def cache_namespace_session() -> str:

    return f"tidings-test-{RUN_ID}-fuzz-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="package")
def amqp_vhost_session() -> Iterator[str]:
    yield from _vhost()


EXAMPLE_USER_ID = NotificationCreate.model_config["json_schema_extra"]["examples"][0]["user_id"]


async def _take_example_id(fuzzed: BackgroundSystem, user_id: str) -> None:
    assert fuzzed.system is not None
    conn = await asyncpg.connect(fuzzed.system.settings["database_url"])
    try:
        await conn.execute(
            "UPDATE users.users SET id = $1 WHERE id = $2",
            uuid.UUID(EXAMPLE_USER_ID),
            uuid.UUID(user_id),
        )
    finally:
        await conn.close()


@pytest.fixture(scope="package")
def credentials(fuzzed: BackgroundSystem) -> dict[str, dict[str, str]]:
    """The headers each service is fuzzed with: the admin key, and a credential of a client
    (an API key at the gateway, a user's access token at the users and templates services),
    so the requests reach the handlers past the checks of who may do what."""
    gateway = fuzzed.url("gateway")
    with httpx.Client(base_url=gateway, headers=ADMIN, timeout=10) as client:
        key = client.post(
            "/api/v1/admin/api-keys/",
            json={
                "name": "fuzzer",
                "scopes": ["notifications:send", "notifications:read", "users:write"],
            },
        )
        assert key.status_code == 201, key.text
        user = client.post(
            "/api/v1/users/",
            json={
                "name": "Fuzz",
                "email": "fuzz@example.com",
                "preferences": {"email": True, "push": True},
                "password": "a long enough password",
            },
        )
        assert user.status_code == 201, user.text
        # The user and the template the request examples name, so those examples (which the
        # fuzzer sends first) go the whole way through, not only to a 404.
        fuzzed.run(_take_example_id(fuzzed, user.json()["data"]["user_id"]), 30)
        template = client.post("/api/v1/templates/", json={"code": "welcome", **WELCOME})
        assert template.status_code == 201, template.text
        login = client.post(
            "/api/v1/auth/login/",
            json={"email": "fuzz@example.com", "password": "a long enough password"},
        )
        assert login.status_code == 200, login.text
    token = login.json()["data"]["access_token"]
    return {
        "api_key": {"Authorization": f"Bearer {key.json()['data']['key']}"},
        "user": {"Authorization": f"Bearer {token}"},
    }
