"""The benchmark run: an SMTP sink in this process, the stack (started or targeted), the
set-up through the gateway, the load (closed or open loop), and the wait for every message.

Every time is ``time.perf_counter()`` in this process: the send time of a request and the
arrival time of its message are read from the same clock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiosmtpd.smtp import SMTP, Envelope, Session

SERVICES = ("gateway", "users", "templates", "email", "push")
TARGET_SMTP_PORT = 2525
PASSWORD = "bench password, long enough"
TEMPLATE = {
    "channel": "email",
    "language": "en",
    "subject": "Hello {{ name }}",
    "body": '<p>Hello {{ name }}: <a href="{{ link }}">{{ link }}</a></p>',
    "text_body": "Hello {{ name }}: {{ link }}",
}


@dataclass
class BenchConfig:
    n: int = 1000
    concurrency: int = 50
    rate: float | None = None
    users: int = 100
    target: str | None = None
    admin_key: str | None = None
    smtp_port: int = 0
    database_url: str | None = None
    amqp_url: str | None = None
    redis_url: str | None = None
    timeout_s: float = 120.0
    settle_s: float = 1.0
    stack_pids: list[int] = field(default_factory=list)
    log_file: Path = Path("artifacts/bench/tidings-up.log")

    @property
    def mode(self) -> str:
        return (
            f"open loop at {self.rate:g}/s" if self.rate else f"closed loop, c={self.concurrency}"
        )

    @property
    def stack(self) -> str:
        if self.target:
            return f"target {self.target}"
        if self.database_url or self.amqp_url or self.redis_url:
            return "tidings up: five supervised processes"
        return "tidings up: embedded default (one process)"


@dataclass
class Sent:
    send_t: float
    accept_t: float = 0.0
    status: int = 0  # HTTP status; 0 when the request failed without an answer


@dataclass
class CpuSample:
    name: str
    seconds: float


@dataclass
class BenchResult:
    config: BenchConfig
    command: str
    run_id: str
    sent: dict[str, Sent]
    arrivals: dict[str, list[float]]
    foreign: int
    cpu: dict[str, float]
    cpu_note: str
    error_samples: list[str]
    started_at: str


class Sink:
    """An SMTP server that counts messages by X-Request-ID and records when each arrived."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.arrivals: dict[str, list[float]] = {}
        self.prefix = ""
        self.foreign = 0  # messages whose request id is not this run's
        self.count = 0
        self.server: asyncio.Server | None = None
        self.changed = asyncio.Event()
        self.awaiting: set[str] = set()  # accepted request ids not arrived yet

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        now = time.perf_counter()
        raw = envelope.original_content or b""
        rid = request_id_of(raw)
        if rid is not None and rid.startswith(self.prefix):
            self.arrivals.setdefault(rid, []).append(now)
            self.awaiting.discard(rid)
            self.count += 1
            self.changed.set()
        else:
            self.foreign += 1
        return "250 OK"

    async def start(self) -> Sink:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self, hostname="tidings-bench"), "127.0.0.1", self.port
        )
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 2)


def request_id_of(raw: bytes) -> str | None:
    """The X-Request-ID header, read from the raw header block (no MIME parsing)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line[:13].lower() == b"x-request-id:":
            return line[13:].strip().decode("ascii", "replace")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """``python -m tidings up`` as a subprocess, pointed at the sink."""

    def __init__(self, config: BenchConfig, smtp_port: int, data_dir: Path) -> None:
        self.ports = {s: free_port() for s in SERVICES}
        self.admin_key = secrets.token_urlsafe(32)
        self.log_file = config.log_file
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env |= {f"TIDINGS_{s.upper()}_PORT": str(p) for s, p in self.ports.items()}
        env |= {
            "TIDINGS_ADMIN_API_KEY": self.admin_key,
            "TIDINGS_SECRET_KEY": secrets.token_urlsafe(32),
            "TIDINGS_SERVICE_TOKEN": secrets.token_urlsafe(32),
            "TIDINGS_DATA_DIR": str(data_dir),
            "TIDINGS_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "TIDINGS_SMTP_CAPTURE_PORT": str(free_port()),
            "TIDINGS_CACHE_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
            # A benchmark sends many notifications to few recipients, fast.
            "TIDINGS_RECIPIENT_RATE_PER_S": "1000000",
            "TIDINGS_RECIPIENT_BURST": "1000000",
            "TIDINGS_RATE_LIMIT_PER_S": "1000000",
            "TIDINGS_RATE_LIMIT_BURST": "1000000",
        }
        for name, url in (
            ("DATABASE", config.database_url),
            ("AMQP", config.amqp_url),
            ("REDIS", config.redis_url),
        ):
            if url:
                env[f"TIDINGS_{name}_URL"] = url
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    async def start(self, timeout_s: float = 90.0) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tidings", "up", env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                if self.proc.returncode is not None:
                    raise RuntimeError(
                        f"tidings up exited with {self.proc.returncode}; see {self.log_file}"
                    )
                if await self._healthy(client):
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"tidings up not healthy in {timeout_s:g}s; see {self.log_file}"
                    )
                await asyncio.sleep(0.2)

    async def _healthy(self, client: httpx.AsyncClient) -> bool:
        for port in self.ports.values():
            try:
                answer = await client.get(f"http://127.0.0.1:{port}/health")
                if answer.status_code != 200 or answer.json()["data"]["status"] != "ok":
                    return False
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                return False
        return True

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


# The servers Tidings runs on, when they run on this machine: their CPU is part of the cost.
INFRASTRUCTURE = {"postgres": "PostgreSQL", "beam.smp": "RabbitMQ", "redis-server": "Redis"}


class Cpu:
    """CPU seconds (user + system) of processes and their children, between two samples;
    and of the local PostgreSQL, RabbitMQ and Redis servers, whoever they worked for."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.start: dict[int | str, tuple[str, float]] = {}
        self.note = ""
        try:
            import psutil  # noqa: F401
        except ImportError:
            self.note = "psutil is not installed (pip install 'tidings[bench]'): no CPU figures"

    def sample(self) -> dict[int | str, tuple[str, float]]:
        if self.note:
            return {}
        import psutil

        out: dict[int | str, tuple[str, float]] = {}
        procs: list[Any] = []
        for pid in self.roots:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                procs += [root, *root.children(recursive=True)]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                out[proc.pid] = (process_name(proc.cmdline(), proc.pid), times.user + times.system)
        out.update(self._infrastructure())
        return out

    @staticmethod
    def _infrastructure() -> dict[int | str, tuple[str, float]]:
        """Per server: its processes' own times, plus the reaped children's (a PostgreSQL
        backend that ended during the run is counted in its postmaster's children times)."""
        import psutil

        totals: dict[int | str, tuple[str, float]] = {}
        for proc in psutil.process_iter(["name", "ppid"]):
            with contextlib.suppress(psutil.Error):
                label = INFRASTRUCTURE.get(proc.info["name"] or "")
                if label is None:
                    continue
                times = proc.cpu_times()
                seconds = times.user + times.system
                parent = psutil.Process(proc.info["ppid"]) if proc.info["ppid"] else None
                if parent is None or parent.name() != proc.info["name"]:  # the server's root
                    seconds += times.children_user + times.children_system
                key = f"server:{label}"
                totals[key] = (f"{label} server", totals.get(key, (label, 0.0))[1] + seconds)
        return totals

    def begin(self) -> None:
        self.start = self.sample()

    def end(self) -> dict[str, float]:
        """Seconds per process name; a process that started meanwhile counts from zero."""
        used: dict[str, float] = {}
        for pid, (name, seconds) in self.sample().items():  # pid, or server:<label>
            used[name] = used.get(name, 0.0) + seconds - self.start.get(pid, (name, 0.0))[1]
        return dict(used)


def process_name(cmdline: list[str], pid: int) -> str:
    if pid == os.getpid():
        return "bench (load generator + SMTP sink)"
    if "run" in cmdline and cmdline.index("run") + 1 < len(cmdline):
        return cmdline[cmdline.index("run") + 1]
    if "up" in cmdline:
        return "tidings up"
    return " ".join(cmdline[-3:]) or str(pid)


class Progress:
    """One status line on stderr, rewritten in place on a terminal (a line every 5 s if not)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()
        self.last_line = 0.0

    def show(self, phase: str, sent: int, accepted: int, delivered: int, errors: int) -> None:
        now = time.perf_counter()
        if not self.tty and now - self.last_line < 5:
            return
        self.last_line = now
        width = 24
        done = int(width * delivered / self.total) if self.total else width
        bar = "#" * done + "-" * (width - done)
        line = (
            f"{phase:9} [{bar}] sent {sent}/{self.total}  accepted {accepted}  "
            f"delivered {delivered}  errors {errors}  {now - self.t0:6.1f}s"
        )
        sys.stderr.write(("\r" + line + "\x1b[K") if self.tty else line + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


async def _create_users(client: httpx.AsyncClient, count: int, run_id: str) -> list[dict[str, Any]]:
    limit = asyncio.Semaphore(10)

    async def one(k: int) -> dict[str, Any]:
        body = {
            "name": f"Bench User {k}",
            "email": f"bench-{run_id}-{k}@example.com",
            "push_token": None,
            "preferences": {"email": True, "push": False},
            "password": PASSWORD,
        }
        async with limit:
            answer = await client.post("/api/v1/users/", json=body)
        if answer.status_code != 201:
            raise RuntimeError(f"creating a user: {answer.status_code} {answer.text[:300]}")
        return dict(answer.json()["data"])

    return list(await asyncio.gather(*(one(k) for k in range(count))))


async def _create_template(client: httpx.AsyncClient, run_id: str) -> str:
    code = f"bench-{run_id}"
    answer = await client.post("/api/v1/templates/", json={"code": code, **TEMPLATE})
    if answer.status_code != 201:
        raise RuntimeError(f"creating the template: {answer.status_code} {answer.text[:300]}")
    return code


async def _create_api_key(client: httpx.AsyncClient, run_id: str) -> str:
    """The load is sent as a client application does: with an API key allowed to send
    (its rate limit raised out of the way), not with the admin key."""
    answer = await client.post(
        "/api/v1/admin/api-keys/",
        json={
            "name": f"bench {run_id}",
            "scopes": ["notifications:send"],
            "rate_per_s": 1_000_000,
            "burst": 1_000_000,
        },
    )
    if answer.status_code != 201:
        raise RuntimeError(f"creating an API key: {answer.status_code} {answer.text[:300]}")
    key: str = answer.json()["data"]["key"]
    return key


async def run(config: BenchConfig) -> BenchResult:
    run_id = uuid.uuid4().hex[:8]
    smtp_port = config.smtp_port or (TARGET_SMTP_PORT if config.target else 0)
    sink = Sink(smtp_port)
    sink.prefix = f"bench-{run_id}-"
    await sink.start()
    stack: Stack | None = None
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as data_dir:
        try:
            if config.target:
                gateway, admin_key = config.target.rstrip("/"), config.admin_key or ""
                roots = list(config.stack_pids)
            else:
                stack = Stack(config, sink.port, Path(data_dir))
                print(
                    f"starting tidings up ({config.stack}); log: {stack.log_file}", file=sys.stderr
                )
                await stack.start()
                gateway, admin_key = stack.gateway, stack.admin_key
                assert stack.proc is not None
                roots = [stack.proc.pid]
            return await _measure(config, run_id, sink, gateway, admin_key, roots)
        finally:
            if stack is not None:
                await stack.stop()
            await sink.stop()


async def _measure(
    config: BenchConfig,
    run_id: str,
    sink: Sink,
    gateway: str,
    admin_key: str,
    roots: list[int],
) -> BenchResult:
    pool = config.concurrency if not config.rate else max(64, int(config.rate // 4))
    headers = {"Authorization": f"Bearer {admin_key}"}
    # One client per connection, each used by one request at a time: httpx's pool looks at
    # every connection for every request, which cost the load generator more CPU than the
    # request itself at 50 connections (measured with py-spy; docs/performance.md).
    async with contextlib.AsyncExitStack() as clients:
        idle: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        every: list[httpx.AsyncClient] = []
        for _ in range(pool):
            every.append(
                await clients.enter_async_context(
                    httpx.AsyncClient(
                        base_url=gateway,
                        headers=headers,
                        timeout=30,
                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                    )
                )
            )
            idle.put_nowait(every[-1])
        client = every[0]
        users = await _create_users(client, max(1, config.users), run_id)
        template = await _create_template(client, run_id)
        api_key = await _create_api_key(client, run_id)
        for each in every:
            each.headers["Authorization"] = f"Bearer {api_key}"
        print(
            f"{len(users)} users and template {template} made; sending {config.n} "
            f"({config.mode}) to {gateway}, SMTP sink on 127.0.0.1:{sink.port}",
            file=sys.stderr,
        )
        sent: dict[str, Sent] = {}
        tally = [0, 0]  # answered 202, answered otherwise or not at all
        errors: list[str] = []
        ids = [f"bench-{run_id}-{i}" for i in range(config.n)]

        async def send(i: int, send_t: float) -> None:
            rid = ids[i]
            user = users[i % len(users)]
            record = sent[rid] = Sent(send_t)
            body = {
                "notification_type": "email",
                "user_id": user["user_id"],
                "template_code": template,
                "variables": {"name": user["name"], "link": f"https://example.com/{i}"},
                "request_id": rid,
                "priority": 5,
                "metadata": None,
            }
            client = await idle.get()
            try:
                answer = await client.post("/api/v1/notifications/", json=body)
                record.status = answer.status_code
                if answer.status_code != 202 and len(errors) < 10:
                    errors.append(f"{answer.status_code} {answer.text[:200]}")
            except httpx.HTTPError as exc:
                if len(errors) < 10:
                    errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                idle.put_nowait(client)
            record.accept_t = time.perf_counter()
            tally[0 if record.status == 202 else 1] += 1

        progress = Progress(config.n)

        def counts() -> tuple[int, int, int, int]:
            return len(sent), tally[0], len(sink.arrivals), tally[1]

        async def report_progress(phase: list[str]) -> None:
            while True:
                progress.show(phase[0], *counts())
                await asyncio.sleep(0.25)

        phase = ["sending"]
        cpu = Cpu([*roots, os.getpid()])
        cpu.begin()
        ticker = asyncio.create_task(report_progress(phase))
        try:
            if config.rate:
                t0 = time.perf_counter()
                tasks = []
                for i in range(config.n):
                    # Open loop: request i is due at t0 + i/R, whether or not the earlier
                    # ones were answered; its latency counts from when it was due.
                    due = t0 + i / config.rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(send(i, due)))
                await asyncio.gather(*tasks)
            else:
                queue = iter(range(config.n))

                async def worker() -> None:
                    for i in queue:
                        await send(i, time.perf_counter())

                await asyncio.gather(*(worker() for _ in range(max(1, config.concurrency))))
            phase[0] = "receiving"
            # What is still to arrive, kept by the sink as it arrives: testing the accepted
            # ids against every arrival instead made a set of all of them per wake-up, which
            # slowed the sink (and so the delivery) more the larger the run.
            sink.awaiting = {
                rid for rid, s in sent.items() if s.status == 202 and rid not in sink.arrivals
            }
            deadline = time.perf_counter() + config.timeout_s
            while sink.awaiting and time.perf_counter() < deadline:
                sink.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sink.changed.wait(), 0.5)
            cpu_used = cpu.end()
            phase[0] = "settling"
            await asyncio.sleep(config.settle_s)  # duplicates arriving late still count
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        progress.show(phase[0], *counts())
        progress.done()
    return BenchResult(
        config=config,
        command=" ".join(["tidings", *sys.argv[1:]]) if sys.argv else "tidings bench",
        run_id=run_id,
        sent=sent,
        arrivals=dict(sink.arrivals),
        foreign=sink.foreign,
        cpu=cpu_used,
        cpu_note=cpu.note,
        error_samples=errors,
        started_at=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )
