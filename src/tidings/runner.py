"""Starting Tidings: one service, or every service in one process (the embedded default);
``tidings.supervisor`` runs them as supervised OS processes. This is the composition root:
the only module that imports every service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import signal
import socket
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI

try:  # uvloop: a faster event loop (libuv), where it installs (not on Windows)
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

from tidings.banner import banner
from tidings.core.bus import open_bus
from tidings.core.cache import MemoryCache
from tidings.core.logs import configure_logging
from tidings.core.migrations import migrate
from tidings.core.settings import SERVICES, ServiceName, TidingsSettings
from tidings.credentials import (
    CREDENTIALS,
    ConfigurationError,
    ensure_credentials,
    forget_kept,
)
from tidings.mailcapture import start_capture

if TYPE_CHECKING:
    from tidings.email_worker.settings import EmailSettings

log = logging.getLogger(__name__)

# Every store: (service, the package holding its migrations). Each service's schema is
# named after it; both workers' delivery records share one set of migrations in core.
STORES = (
    ("users", "tidings.users"),
    ("templates", "tidings.templates"),
    ("gateway", "tidings.gateway"),
    ("email", "tidings.core.deliveries"),
    ("push", "tidings.core.deliveries"),
    ("push", "tidings.push_worker"),  # per-device results; its own version table
)


def store_url(service: str) -> str:
    url: str = service_settings(service).store_url
    return url


def service_settings(service: str) -> Any:
    if service == "gateway":
        from tidings.gateway.settings import GatewaySettings

        return GatewaySettings()
    if service == "users":
        from tidings.users.settings import UsersSettings

        return UsersSettings()
    if service == "templates":
        from tidings.templates.settings import TemplatesSettings

        return TemplatesSettings()
    if service == "email":
        from tidings.email_worker.settings import EmailSettings

        return EmailSettings()
    if service == "push":
        from tidings.push_worker.settings import PushSettings

        return PushSettings()
    if service == "webhooks":
        from tidings.webhooks.settings import WebhooksSettings

        return WebhooksSettings()
    raise ValueError(f"unknown service {service!r}; one of {', '.join(SERVICES)}")


def capture_settings() -> EmailSettings:
    """The email worker's settings, for the SMTP capture server `tidings up` starts in its
    place when TIDINGS_SMTP_URL is unset (and on TIDINGS_SMTP_CAPTURE_PORT)."""
    from tidings.email_worker.settings import EmailSettings

    return EmailSettings()


def build_app(service: str, *, bus: Any = None, cache: Any = None) -> FastAPI:
    settings = service_settings(service)
    if service == "gateway":
        from tidings.gateway.app import create_app as gateway

        return gateway(settings, bus=bus, cache=cache)
    if service == "users":
        from tidings.users.app import create_app as users

        return users(settings)
    if service == "templates":
        from tidings.templates.app import create_app as templates

        return templates(settings)
    if service == "email":
        from tidings.email_worker.app import create_app as email

        return email(settings, bus=bus)
    if service == "webhooks":
        from tidings.webhooks.app import create_app as webhooks

        return webhooks(settings)
    from tidings.push_worker.app import create_app as push

    return push(settings, bus=bus)


def openapi_schemas() -> dict[str, dict[str, Any]]:
    """Every service's OpenAPI schema, built from its app (nothing is started)."""
    return {service: build_app(service).openapi() for service in SERVICES}


def migrate_all() -> str:
    """Every store up to its latest revision; what was done, in one line (also logged)."""
    applied = sum(migrate(package, store_url(service), service) for service, package in STORES)
    schemas = ", ".join(dict.fromkeys(service for service, _ in STORES))
    done = f"{applied} migration(s) applied" if applied else "up to date"
    log.info("schemas %s: %s", schemas, done)
    return f"schemas {schemas}: {done}"


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a process's main coroutine on uvloop when it is installed (measured in
    docs/performance.md), else on asyncio's own loop."""
    if uvloop is not None:
        uvloop.run(main)
    else:  # pragma: no cover
        asyncio.run(main)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening address several processes can bind at once (SO_REUSEPORT): Linux spreads
    new connections over them, and a dead one's share goes to the others, so the gateway's
    replicas serve one URL with no balancer in front. uvicorn has no option for it (it binds
    with SO_REUSEADDR only), so the socket is made here and handed to ``serve``."""
    if not hasattr(socket, "SO_REUSEPORT"):  # pragma: no cover (Windows)
        raise ConfigurationError("TIDINGS_REUSE_PORT needs SO_REUSEPORT (Linux, BSD, macOS)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class Server(uvicorn.Server):
    """A uvicorn server that leaves signals to us, so several can share one loop, and can
    share its port with other processes (``reuse_port``)."""

    def __init__(self, config: uvicorn.Config, *, reuse_port: bool = False) -> None:
        super().__init__(config)
        self.reuse_port = reuse_port
        self.listening = asyncio.Event()  # set once it has started and listens

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.listening.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None and self.reuse_port:
            sockets = [reuse_port_socket(self.config.host, self.config.port)]
        await super().serve(sockets)


# Idle keep-alive connections stay open this long: longer than clients' own idle expiry
# (httpx: 5 s) so that a client never sends on a connection the server is closing.
KEEP_ALIVE_S = 30


def service_server(
    app: FastAPI, host: str, port: int, *, grace_s: float, reuse_port: bool = False
) -> Server:
    """``grace_s``: after a stop, how long requests in flight may take before they are
    cancelled and the app's own shutdown runs (uvicorn's own default waits for ever: a
    service once kept running, a signal received, long after its supervisor was gone)."""
    return Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            lifespan="on",
            timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=math.ceil(grace_s),  # uvicorn takes whole seconds
            # X-Forwarded-For is the app's to believe or not (TIDINGS_FORWARDED_ALLOW_IPS);
            # uvicorn's own default would believe any local peer.
            proxy_headers=False,
        ),
        reuse_port=reuse_port,
    )


async def _serve_all(servers: list[Server], on_listening: Callable[[], None] | None = None) -> None:
    """Serve until a signal, or until one server stops; ``on_listening`` is called once every
    server listens."""
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers:
            if server.should_exit:  # a second signal: no more waiting
                server.force_exit = True
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    if on_listening is not None:
        listening = asyncio.ensure_future(asyncio.gather(*(s.listening.wait() for s in servers)))
        either: list[asyncio.Future[Any]] = [listening, *tasks]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if listening.done():
            on_listening()
        else:
            listening.cancel()
    # If one server stops (a failed start, or a signal), stop them all.
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    stop()
    await asyncio.gather(*tasks, return_exceptions=True)


# Services that talk over the bus: apart, they need a real one to reach each other.
BUS_SERVICES = ("gateway", "email", "push")


def require_broker(settings: TidingsSettings, what: str) -> None:
    if not settings.amqp_url:
        raise ConfigurationError(
            f"{what} needs TIDINGS_AMQP_URL: services in separate processes reach each other "
            "through RabbitMQ (with no TIDINGS_*_URL at all, `tidings up` runs everything in "
            "one process instead)"
        )


def require_credentials(settings: TidingsSettings, what: str) -> None:
    missing = [f"TIDINGS_{n.upper()}" for n in CREDENTIALS if settings.secret_or_none(n) is None]
    if missing:
        raise ConfigurationError(
            f"{what} needs {', '.join(missing)}, the same in every service's process "
            "(`tidings up` makes them itself)"
        )


def run_service(service: ServiceName) -> None:
    settings = TidingsSettings()
    if service in BUS_SERVICES:
        require_broker(settings, f"`tidings run {service}`")
    require_credentials(settings, f"`tidings run {service}`")
    configure_logging(service, settings.log_level, settings.log_format)
    if service == "webhooks":  # background work: the delivery path's cores come first
        from tidings.webhooks.app import lower_priority

        lower_priority()
    app = build_app(service)
    port = settings.port_of(service)
    server = service_server(
        app, settings.host, port, grace_s=settings.shutdown_grace_s, reuse_port=settings.reuse_port
    )
    url = f"http://{settings.host}:{port}"
    run_loop(_serve_all([server], lambda: log.info("%s listening on %s", service, url)))


def reset_embedded(settings: TidingsSettings) -> None:
    """Forget what the embedded default made: its kept credentials, its SQLite files and
    the captured mail. Nothing else in the data directory is touched."""
    forget_kept(settings)
    for service in dict.fromkeys(service for service, _ in STORES):
        for suffix in (".db", ".db-wal", ".db-shm", ".db-journal"):
            (settings.data_dir / f"{service}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(settings.data_dir / "mailbox", ignore_errors=True)
    log.info("reset: the embedded default's credentials and data in %s are gone", settings.data_dir)


def run_embedded(*, reset: bool = False) -> None:
    """Every service in this process: SQLite, the in-process bus and cache, and the SMTP
    capture server unless TIDINGS_SMTP_URL is set. ``reset``: start afresh."""
    settings = TidingsSettings()
    configure_logging("tidings", settings.log_level, settings.log_format)
    if reset:
        reset_embedded(settings)
    credentials = ensure_credentials(settings, keep=True)
    settings = credentials.settings
    migrate_all()
    mail = capture_settings()

    async def main() -> None:
        bus = open_bus(settings.model_copy(update={"amqp_url": None}))
        await bus.start()
        cache = MemoryCache()
        capture = None
        if not mail.smtp_url:
            capture = await start_capture(
                "127.0.0.1", mail.smtp_capture_port, settings.data_dir / "mailbox"
            )
        servers = [
            service_server(
                build_app(s, bus=bus, cache=cache),
                settings.host,
                settings.port_of(s),
                grace_s=settings.shutdown_grace_s,
            )
            for s in SERVICES
        ]
        up = f"Tidings is up (embedded: every service in this process; data in {settings.data_dir})"
        try:
            await _serve_all(servers, lambda: print(banner(credentials, up, mail), flush=True))
        finally:
            await bus.close()
            if capture is not None:
                capture.close()
                await capture.wait_closed()

    run_loop(main())
