"""``tidings up`` on the real infrastructure: every service as its own OS process, N of each
(``--replicas email=2,gateway=2``), each restarted when it dies and all stopped on
SIGINT/SIGTERM.

Where the replicas listen:

* the gateway's replicas share its port (SO_REUSEPORT, ``TIDINGS_REUSE_PORT``): clients keep
  one URL, the kernel spreads their connections, and a dead replica's share goes to the others
  at once;
* every other service's replica ``k`` (from 0) listens on its port + ``REPLICA_PORT_STEP * k``:
  users and templates replicas are found through discovery (Redis), which tells instances
  apart by address, and each worker replica has its own /health and /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from typing import cast

from tidings.banner import banner
from tidings.core.logs import configure_logging
from tidings.core.settings import SERVICES, STOP_MARGIN_S, ServiceName, TidingsSettings
from tidings.credentials import ensure_credentials
from tidings.mailcapture import start_capture
from tidings.runner import (
    ConfigurationError,
    capture_settings,
    migrate_all,
    require_broker,
    run_loop,
)

log = logging.getLogger(__name__)

# Replica k of a service listens this many ports above replica k-1. The default ports are
# 8000..8004, so 100 keeps every replica of every service apart.
REPLICA_PORT_STEP = 100
MAX_REPLICAS = 32


def parse_replicas(text: str | None) -> dict[ServiceName, int]:
    """``"email=2,gateway=2"`` -> how many processes of each service (1 unless named)."""
    counts: dict[ServiceName, int] = dict.fromkeys(SERVICES, 1)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, number = (x.strip() for x in part.partition("="))
        if name not in SERVICES or not number.isdigit() or not 1 <= int(number) <= MAX_REPLICAS:
            raise ConfigurationError(
                f"--replicas: {part.strip()!r} is not SERVICE=N with N from 1 to {MAX_REPLICAS}"
                f" (services: {', '.join(SERVICES)})"
            )
        counts[cast(ServiceName, name)] = int(number)
    return counts


def check_replicas(settings: TidingsSettings, counts: dict[ServiceName, int]) -> None:
    for service in ("users", "templates"):
        if counts[service] > 1 and not settings.discovers(service):
            raise ConfigurationError(
                f"more than one {service} process is found through discovery: set "
                f"TIDINGS_REDIS_URL and leave TIDINGS_{service.upper()}_URL unset"
            )
    taken: dict[int, str] = {}
    for service, count in counts.items():
        replicas = 1 if service == "gateway" else count  # the gateway's share one port
        for k in range(replicas):
            port = settings.port_of(service) + REPLICA_PORT_STEP * k
            if port > 65535 or port in taken:
                raise ConfigurationError(
                    f"{service} replica {k} would listen on port {port}"
                    + (f", {taken[port]}'s" if port in taken else ", past 65535")
                )
            taken[port] = f"{service} replica {k}"


def replica_env(
    settings: TidingsSettings, service: ServiceName, index: int, count: int
) -> dict[str, str]:
    """What replica ``index`` of ``count`` gets in its environment on top of ours."""
    if service == "gateway":
        return {"TIDINGS_REUSE_PORT": "true"} if count > 1 else {}
    if index == 0:
        return {}
    port = settings.port_of(service) + REPLICA_PORT_STEP * index
    return {f"TIDINGS_{service.upper()}_PORT": str(port)}


async def _supervise_one(
    name: str, service: str, env: dict[str, str], stopping: asyncio.Event, stop_after_s: float
) -> None:
    """Keep one process running until ``stopping``; restart it when it dies."""
    backoff_s = 0.5
    while not stopping.is_set():
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tidings", "run", service, env=os.environ | env
        )
        waiter = asyncio.create_task(proc.wait())
        stop_waiter = asyncio.create_task(stopping.wait())
        try:
            await asyncio.wait({waiter, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # Cancelled (the supervisor itself is going: an error elsewhere, the loop closing):
            # the child goes with it, never left running without a supervisor.
            if proc.returncode is None:
                log.error("%s: supervisor ending, child killed", name)
                proc.kill()
            stop_waiter.cancel()
            raise
        if stopping.is_set():
            if proc.returncode is None:
                proc.terminate()
                # asyncio.wait, not wait_for: wait_for cancels the waiter when it times out,
                # and the supervisor then died of that CancelledError with its child alive.
                done, _ = await asyncio.wait({waiter}, timeout=stop_after_s)
                if not done:
                    log.error("%s did not stop in %.0fs after SIGTERM: killed", name, stop_after_s)
                    proc.kill()
                    await waiter
            return
        stop_waiter.cancel()
        if time.monotonic() - started > 30:
            backoff_s = 0.5
        log.error("%s exited with %s; restarting in %.1fs", name, proc.returncode, backoff_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), backoff_s)
        backoff_s = min(backoff_s * 2, 30)


# How long the processes may take to answer /health before the banner gives up waiting.
ANNOUNCE_WITHIN_S = 120.0


async def _announce(settings: TidingsSettings, text: str, stopping: asyncio.Event) -> None:
    """Print ``text`` once the first process of every service answers /health (they are in
    other processes: there is no event to wait on, so it asks every 0.2 s)."""
    import httpx

    loop = asyncio.get_running_loop()
    deadline = loop.time() + ANNOUNCE_WITHIN_S
    async with httpx.AsyncClient(timeout=2) as client:
        waiting = list(SERVICES)
        while waiting and not stopping.is_set():
            for service in list(waiting):
                with contextlib.suppress(httpx.HTTPError):
                    answer = await client.get(f"{settings.advertised_url(service)}/health")
                    if answer.status_code == 200:
                        waiting.remove(service)
            if waiting and loop.time() > deadline:
                log.warning("not healthy after %.0fs: %s", ANNOUNCE_WITHIN_S, ", ".join(waiting))
                return
            if waiting:
                await asyncio.sleep(0.2)
    if not waiting:
        print(text, flush=True)


def run_supervised(replicas: str | None = None) -> None:
    settings = TidingsSettings()
    require_broker(settings, "`tidings up` with TIDINGS_DATABASE_URL or TIDINGS_REDIS_URL set")
    counts = parse_replicas(replicas)
    check_replicas(settings, counts)
    configure_logging("supervisor", settings.log_level, settings.log_format)
    credentials = ensure_credentials(settings)
    settings = credentials.settings
    migrate_all()
    mail = capture_settings()
    processes = [
        (
            f"{service}#{k}" if count > 1 else service,
            service,
            replica_env(settings, service, k, count),
        )
        for service, count in counts.items()
        for k in range(count)
    ]

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        capture = None
        if not mail.smtp_url:
            capture = await start_capture(
                "127.0.0.1", mail.smtp_capture_port, settings.data_dir / "mailbox"
            )
        names = ", ".join(name for name, _, _ in processes)
        log.info("starting %s", names)
        up = f"Tidings is up ({names}: each its own process)"
        announce = asyncio.create_task(_announce(settings, banner(credentials, up, mail), stopping))
        try:
            stop_after_s = settings.shutdown_grace_s + STOP_MARGIN_S
            await asyncio.gather(*(_supervise_one(*p, stopping, stop_after_s) for p in processes))
        finally:
            announce.cancel()
            if capture is not None:
                capture.close()

    run_loop(main())
