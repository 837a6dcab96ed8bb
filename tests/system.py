"""The five services in the test's own process, as real HTTP servers on free ports, against
real PostgreSQL, RabbitMQ and Redis (or the embedded adapters), and a real SMTP peer."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.credentials import ADMIN, SETTINGS
from tests.helpers import free_port, wait_for_condition
from tests.smtp_peer import SmtpPeer
from tidings.core.migrations import migrate
from tidings.email_worker.app import create_app as email_app
from tidings.email_worker.settings import EmailSettings
from tidings.gateway.app import create_app as gateway_app
from tidings.gateway.settings import GatewaySettings
from tidings.push_worker.app import create_app as push_app
from tidings.push_worker.settings import PushSettings
from tidings.runner import Server, service_server
from tidings.templates.app import create_app as templates_app
from tidings.templates.settings import TemplatesSettings
from tidings.users.app import create_app as users_app
from tidings.users.settings import UsersSettings

# A stopping service's requests in flight get this long (`tidings up` has its own setting), and
# its own shutdown STOP_S more.
GRACE_S = 5
STOP_S = 15


@dataclass
class System:
    smtp: SmtpPeer
    settings: dict[str, Any]
    servers: list[Server] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    client: httpx.AsyncClient | None = None
    apps: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    async def _stop(self, indices: list[int]) -> None:
        """Stop these servers cleanly: requests in flight get GRACE_S (as in `tidings up`),
        then each app's own shutdown runs. One that has not stopped STOP_S later is said, with
        what it waits on (seen in CI once: a stop that never ended, cause not found), and
        stopped hard, so the test goes on as it meant to and the next module gets its time."""
        for i in indices:
            self.servers[i].should_exit = True
        tasks = [self.tasks[i] for i in indices]
        _, pending = await asyncio.wait(tasks, timeout=GRACE_S + STOP_S)
        if pending:
            print(f"{len(pending)} service(s) still stopping after {GRACE_S + STOP_S} s: forced")
            for task in asyncio.all_tasks():
                task.print_stack(limit=8)
            for i in indices:
                self.servers[i].force_exit = True
            await asyncio.wait(pending, timeout=STOP_S)

    async def stop_service(self, name: str) -> None:
        """Stop one in-process service (its lifespan shuts down cleanly)."""
        await self._stop([list(self.apps).index(name)])

    async def start_service(self, name: str) -> None:
        """Start a stopped in-process service again, on its port, and wait until it answers."""
        index = list(self.apps).index(name)
        server = service_server(self.apps[name], "127.0.0.1", self.ports[name], grace_s=GRACE_S)
        self.servers[index] = server
        self.tasks[index] = asyncio.create_task(server.serve())
        url = f"http://127.0.0.1:{self.ports[name]}/health"

        async def up() -> bool:
            return (await self.gateway.get(url)).status_code == 200

        await wait_for_condition(up, timeout_s=30, what=f"{name} back")

    @property
    def gateway(self) -> httpx.AsyncClient:
        assert self.client is not None
        return self.client

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
        await self._stop(list(range(len(self.servers))))
        await self.smtp.stop()


def _bound() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def start_system(
    *, skip: tuple[str, ...] = (), smtp: SmtpPeer | None = None, **common: Any
) -> System:
    """Every service but those in ``skip`` (a test may run those as processes itself)."""
    smtp = smtp or await SmtpPeer().start()
    # The in-process services' sockets are bound now and handed to their servers: a port
    # only looked up here could be taken (an outgoing connection's ephemeral port) during the
    # migrations below, before the server binds it (seen in CI: EADDRINUSE).
    names = ("gateway", "users", "templates", "email", "push")
    held = {s: _bound() for s in names if s not in skip}
    ports = {s: held[s].getsockname()[1] if s in held else free_port() for s in names}
    base = {
        **SETTINGS,
        # Tests send many notifications to one user and log in often: limits out of the way
        # unless a test sets its own.
        "recipient_rate_per_s": 1e6,
        "recipient_burst": 1_000_000,
        "login_burst": 1_000,
        "auth_failure_burst": 100_000,
        "user_burst": 100_000,
        **common,
        "smtp_url": smtp.url,
        "gateway_port": ports["gateway"],
        "users_port": ports["users"],
        "templates_port": ports["templates"],
        "email_port": ports["email"],
        "push_port": ports["push"],
        "log_format": "text",
    }
    system = System(smtp=smtp, settings=base)
    users = UsersSettings(**base)
    templates = TemplatesSettings(**base)
    gateway = GatewaySettings(**base)
    email = EmailSettings(**base)
    push = PushSettings(**base)
    for package, settings, schema in (
        ("tidings.users", users, "users"),
        ("tidings.templates", templates, "templates"),
        ("tidings.gateway", gateway, "gateway"),
        ("tidings.core.deliveries", email, "email"),
        ("tidings.core.deliveries", push, "push"),
        ("tidings.push_worker", push, "push"),
    ):
        await asyncio.to_thread(migrate, package, settings.store_url, schema)
    apps = {
        "users": lambda: users_app(users),
        "templates": lambda: templates_app(templates),
        "gateway": lambda: gateway_app(gateway),
        "email": lambda: email_app(email),
        "push": lambda: push_app(push),
    }
    system.apps = {name: make() for name, make in apps.items() if name not in skip}
    system.ports = ports
    for name, app in system.apps.items():  # servers and tasks in the order of apps
        server = service_server(app, "127.0.0.1", ports[name], grace_s=GRACE_S)
        system.servers.append(server)
        system.tasks.append(asyncio.create_task(server.serve(sockets=[held[name]])))
    system.client = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{ports['gateway']}", timeout=10, headers=ADMIN
    )

    async def all_healthy() -> bool:
        for name in system.apps:
            answer = await system.gateway.get(f"http://127.0.0.1:{ports[name]}/health")
            if answer.status_code != 200:
                return False
        return True

    await wait_for_condition(all_healthy, timeout_s=30, what="every service healthy")
    return system
