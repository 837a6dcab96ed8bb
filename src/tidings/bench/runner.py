"""The benchmark run: an SMTP sink (a process of its own), the stack (started or targeted),
the set-up through the gateway, the load (closed loop, open loop, or an open-loop curve of
rising rates), and the wait for every message.

Every time is ``time.perf_counter()``, ``CLOCK_MONOTONIC`` on Linux: one clock for the load
generator and the sink's process, so a request's send time and its message's arrival time
compare directly."""

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
import orjson

from tidings.bench.cpu import Cpu
from tidings.bench.hooks import EMAIL_PATH, HookCounts, HookTally
from tidings.bench.load import Load, request_bytes
from tidings.bench.preflight import require_empty_queues
from tidings.bench.profile import Profiler
from tidings.bench.sink import Tally
from tidings.core.settings import STOP_MARGIN_S

SERVICES = ("gateway", "users", "templates", "email", "push", "webhooks")
TARGET_SMTP_PORT = 2525
PASSWORD = "bench password, long enough"
TEMPLATE = {
    "channel": "email",
    "language": "en",
    "subject": "Hello {{ name }}",
    "body": '<p>Hello {{ name }}: <a href="{{ link }}">{{ link }}</a></p>',
    "text_body": "Hello {{ name }}: {{ link }}",
}
LOAD_NAME = "bench load generator"
SINK_NAME = "bench SMTP sink"
HOOK_NAME = "bench webhook receiver"


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
    connections: int | None = None  # None: c (closed loop), max(64, R/4) (open loop)
    curve: bool = False  # open loop at 100, 200, 400, ... per second until it saturates
    curve_step_s: float = 10.0
    curve_max: float = 6400.0
    profile_dir: Path | None = None
    # Sent first, at the run's load (the curve's first rate), and reported apart: the
    # figures are then of a stack past its cold start (connections, caches, plans).
    warmup: int = 0
    dkim_key: str | None = None  # a started stack DKIM-signs with this PEM
    # An outbound webhook endpoint subscribed to every event for the run (docs/webhooks.md).
    webhook_url: str | None = None
    # The bench runs its own receiver (tidings.bench.hooks) for that endpoint and counts
    # what it receives by webhook-id; ``webhook_down``: the receiver answers 503 to all;
    # ``webhook_slow_ms``: it answers each after that long.
    webhook_receiver: bool = False
    webhook_down: bool = False
    webhook_slow_ms: int = 0

    @property
    def webhooks_awaited(self) -> bool:
        """The run waits for every event after the mail (a receiver answering at once)."""
        return self.webhook_receiver and not self.webhook_down and not self.webhook_slow_ms

    @property
    def mode(self) -> str:
        if self.curve:
            return f"open-loop curve, {self.curve_step_s:g} s per rate from 100/s"
        return (
            f"open loop at {self.rate:g}/s" if self.rate else f"closed loop, c={self.concurrency}"
        )

    @property
    def stack(self) -> str:
        if self.target:
            return f"target {self.target}"
        signed = ", DKIM-signed" if self.dkim_key else ""
        if self.webhook_receiver:
            signed += ", webhooks to the bench's receiver" + (
                ", down"
                if self.webhook_down
                else f", slow ({self.webhook_slow_ms} ms)"
                if self.webhook_slow_ms
                else ""
            )
        elif self.webhook_url:
            signed += f", webhooks to {self.webhook_url}"
        if self.database_url or self.amqp_url or self.redis_url:
            return f"tidings up: six supervised processes{signed}"
        return f"tidings up: embedded default (one process){signed}"

    def connections_for(self, rate: float | None) -> int:
        if self.connections:
            return self.connections
        return max(64, int(rate // 4)) if rate else max(1, self.concurrency)


@dataclass
class Sent:
    send_t: float
    accept_t: float = 0.0
    status: int = 0  # HTTP status; 0 when the request failed without an answer
    notification_id: str = ""


@dataclass
class Phase:
    """One load: its requests, the arrivals of their messages (by notification id) and the
    CPU it cost."""

    mode: str
    rate: float | None
    sent: dict[str, Sent]
    arrivals: dict[str, list[float]]
    cpu: dict[str, float]
    error_samples: list[str]
    profile: str | None = None
    warmup: bool = False  # sent before the measured load, its figures apart (--warmup)


@dataclass
class BenchResult:
    config: BenchConfig
    command: str
    run_id: str
    phases: list[Phase]
    unexpected: int  # messages at the sink for no accepted notification of this run
    cpu_note: str
    started_at: str
    webhooks: HookCounts | None = None  # with --webhook-receiver


class ChildServer:
    """A bench server (``python -m <module> --port P …``) as a child process, each line it
    prints handed to ``_line``."""

    module = ""

    def __init__(self, port: int, *args: str) -> None:
        self.port = port
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> Any:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.module, "--port", str(self.port), *self.args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        if not line.startswith(b"port "):
            raise RuntimeError(f"{self.module} did not start: {line!r}")
        self.port = int(line.split()[1])
        self.reader = asyncio.create_task(self._read())
        return self

    def _line(self, line: bytes) -> None:
        raise NotImplementedError

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self._line(line.rstrip(b"\n"))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()  # the server flushes what it has and exits
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self.reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


class SinkProcess(ChildServer):
    """``python -m tidings.bench.sink`` as a child process; its arrivals go to a Tally here."""

    module = "tidings.bench.sink"

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.tally = Tally()

    def _line(self, line: bytes) -> None:
        # "<nid> <request id> <t>": another run's request id may hold spaces.
        nid, _, rest = line.partition(b" ")
        rid, _, t = rest.rpartition(b" ")
        self.tally.arrive(nid.decode(), rid.decode(), float(t))


class HookProcess(ChildServer):
    """``python -m tidings.bench.hooks`` (the webhook receiver) as a child process; its
    requests go to a HookTally here."""

    module = "tidings.bench.hooks"

    def __init__(self, down: bool, slow_ms: int = 0) -> None:
        super().__init__(
            0, *(["--down"] if down else []), *(["--slow", str(slow_ms)] * bool(slow_ms))
        )
        self.tally = HookTally()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def _line(self, line: bytes) -> None:
        webhook_id, event_type, nid, status = line.decode().split(" ")
        self.tally.arrive(webhook_id, event_type, nid, int(status))


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports: each socket held until all are bound (ports taken one by
    one, each socket closed at once, could come back twice: two services on one port, and
    ``tidings up`` refused to start)."""
    with contextlib.ExitStack() as held:
        sockets = [held.enter_context(socket.socket()) for _ in range(n)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


class Stack:
    """``python -m tidings up`` as a subprocess, pointed at the sink."""

    def __init__(self, config: BenchConfig, smtp_port: int, data_dir: Path) -> None:
        *ports, capture_port = free_ports(len(SERVICES) + 1)
        self.ports = dict(zip(SERVICES, ports, strict=True))
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
            "TIDINGS_SMTP_CAPTURE_PORT": str(capture_port),
            "TIDINGS_CACHE_NAMESPACE": f"bench-{uuid.uuid4().hex[:8]}",
            # A benchmark sends many notifications to few recipients, fast: the key's and
            # the recipients' limits are off (issue #17's "limits off"; no Redis round trip).
            "TIDINGS_RECIPIENT_RATE_PER_S": "0",
            "TIDINGS_RATE_LIMIT_PER_S": "0",
        }
        for name, url in (
            ("DATABASE", config.database_url),
            ("AMQP", config.amqp_url),
            ("REDIS", config.redis_url),
        ):
            if url:
                env[f"TIDINGS_{name}_URL"] = url
        if config.dkim_key:
            env["TIDINGS_DKIM_PRIVATE_KEY"] = config.dkim_key
        if config.webhook_url:  # a receiver on this machine is plain http on loopback
            env["TIDINGS_WEBHOOK_ALLOW_INSECURE"] = "true"
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    async def start(self, timeout_s: float = 90.0) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("wb") as log:
            # A session of its own: if `up` has to be killed, its children go with it (a
            # bench that killed `up` alone left a service running, its parent gone).
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tidings", "up", env=self.env, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
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
        # As long as `up` itself gives its children (their grace, then its margin), and a
        # little more: killed sooner, it could not stop them.
        grace_s = float(self.env.get("TIDINGS_SHUTDOWN_GRACE_S", 30.0))
        try:
            await asyncio.wait_for(self.proc.wait(), grace_s + STOP_MARGIN_S + 5)
        except TimeoutError:
            os.killpg(self.proc.pid, signal.SIGKILL)  # `up` and every child in its session
            await self.proc.wait()


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


async def _create_api_key(client: httpx.AsyncClient, run_id: str, *, own_rate: bool) -> str:
    """The load is sent as a client application does: with an API key allowed to send, not
    with the admin key. The stack the bench starts has the keys' limit off; a target's key
    gets a rate of its own raised out of the way (``own_rate``), one Redis round trip per
    request there."""
    raised = {"rate_per_s": 1_000_000, "burst": 1_000_000} if own_rate else {}
    answer = await client.post(
        "/api/v1/admin/api-keys/",
        json={"name": f"bench {run_id}", "scopes": ["notifications:send"], **raised},
    )
    if answer.status_code != 201:
        raise RuntimeError(f"creating an API key: {answer.status_code} {answer.text[:300]}")
    key: str = answer.json()["data"]["key"]
    # One request with the key before the load: the gateway counts each look-up of a key it
    # does not know yet as an attempt from the address (its guard against guessing), so the
    # load's first 50 requests at once, all before the first look-up was cached, went past
    # the attempts' burst and were answered 429. Its answer (403: no scope to read) is moot.
    await client.get(
        f"/api/v1/notifications/{uuid.uuid4()}/", headers={"Authorization": f"Bearer {key}"}
    )
    return key


async def run(config: BenchConfig) -> BenchResult:
    run_id = uuid.uuid4().hex[:8]
    smtp_port = config.smtp_port or (TARGET_SMTP_PORT if config.target else 0)
    sink = await SinkProcess(smtp_port).start()
    hooks: HookProcess | None = None
    stack: Stack | None = None
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as data_dir:
        try:
            if config.webhook_receiver:
                hooks = await HookProcess(config.webhook_down, config.webhook_slow_ms).start()
                config.webhook_url = hooks.url
            if config.target:
                gateway, admin_key = config.target.rstrip("/"), config.admin_key or ""
                roots = list(config.stack_pids)
            else:
                if config.amqp_url:
                    await require_empty_queues(config.amqp_url)
                stack = Stack(config, sink.port, Path(data_dir))
                print(
                    f"starting tidings up ({config.stack}); log: {stack.log_file}", file=sys.stderr
                )
                await stack.start()
                gateway, admin_key = stack.gateway, stack.admin_key
                assert stack.proc is not None
                roots = [stack.proc.pid]
            return await _measure(config, run_id, sink, gateway, admin_key, roots, hooks)
        finally:
            if stack is not None:
                await stack.stop()
            if hooks is not None:
                await hooks.stop()
            await sink.stop()


async def _await_webhooks(config: BenchConfig, hooks: HookProcess, delivered: set[str]) -> None:
    """Until every notification delivered by email has reported its whole path to the
    receiver, or ``timeout_s`` passed without a new request (the rest then counts as lost).
    The webhooks worker may well finish after the mail: it takes what delivery leaves."""
    tally = hooks.tally

    def missing() -> int:
        return sum(1 for nid in delivered for t in EMAIL_PATH if not tally.received(nid, t))

    started = time.perf_counter()
    left = missing()
    while left:
        tally.changed.clear()
        try:
            await asyncio.wait_for(tally.changed.wait(), config.timeout_s)
        except TimeoutError:
            break
        left = missing()
    print(
        f"webhooks: waited {time.perf_counter() - started:.1f}s after the mail; {left} missing",
        file=sys.stderr,
    )


@dataclass
class Target:
    """What every request of a run shares: the gateway, the recipients, the template."""

    load_url: str
    host: str
    authorization: str
    users: list[dict[str, Any]]
    template: str
    run_id: str

    def request(self, i: int) -> bytes:
        user = self.users[i % len(self.users)]
        body = {
            "notification_type": "email",
            "user_id": user["user_id"],
            "template_code": self.template,
            "variables": {"name": user["name"], "link": f"https://example.com/{i}"},
            "request_id": f"bench-{self.run_id}-{i}",
            "priority": 5,
            "metadata": None,
        }
        path = "/api/v1/notifications/"
        return request_bytes(self.host, path, self.authorization, orjson.dumps(body))


async def _measure(
    config: BenchConfig,
    run_id: str,
    sink: SinkProcess,
    gateway: str,
    admin_key: str,
    roots: list[int],
    hooks: HookProcess | None = None,
) -> BenchResult:
    # One connection for the set-up: users are made one at a time, as before the raw load
    # generator (ten at once, each an argon2 hash, timed out on a busy machine).
    async with httpx.AsyncClient(
        base_url=gateway,
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
    ) as client:
        users = await _create_users(client, max(1, config.users), run_id)
        template = await _create_template(client, run_id)
        api_key = await _create_api_key(client, run_id, own_rate=bool(config.target))
        if config.webhook_url:
            hook = {"url": config.webhook_url, "events": ["*"], "description": run_id}
            made = await client.post("/api/v1/webhooks/endpoints/", json=hook)
            made.raise_for_status()
    target = Target(gateway, httpx.URL(gateway).netloc.decode(), f"Bearer {api_key}", users,
                    template, run_id)  # fmt: skip
    print(
        f"{len(users)} users and template {template} made; sending ({config.mode}) to "
        f"{gateway}, SMTP sink on 127.0.0.1:{sink.port}",
        file=sys.stderr,
    )
    own = {LOAD_NAME: os.getpid(), SINK_NAME: sink.pid}
    cpu = Cpu(roots, own | ({HOOK_NAME: hooks.pid} if hooks else {}))
    phases: list[Phase] = []
    first = config.warmup
    if config.warmup:
        rate = 100.0 if config.curve else config.rate
        phases.append(
            await _phase(config, target, sink, cpu, roots, 0, first, rate, 0, warmup=True)
        )
    if config.curve:
        rate = 100.0
        while rate <= config.curve_max:
            n = max(1, int(rate * config.curve_step_s))
            phase = await _phase(config, target, sink, cpu, roots, first, n, rate, len(phases))
            phases.append(phase)
            first += n
            if saturated(phase):
                break
            rate *= 2
    else:
        phases.append(
            await _phase(config, target, sink, cpu, roots, first, config.n, config.rate, 0)
        )
    accepted = {s.notification_id for p in phases for s in p.sent.values() if s.status == 202}
    delivered = {nid for nid in accepted if nid in sink.tally.arrivals}
    if hooks is not None and config.webhooks_awaited:
        await _await_webhooks(config, hooks, delivered)
    await asyncio.sleep(config.settle_s)  # duplicates arriving late still count
    return BenchResult(
        config=config,
        command=" ".join(["tidings", *sys.argv[1:]]) if sys.argv else "tidings bench",
        run_id=run_id,
        phases=phases,
        unexpected=sink.tally.count(accepted).unexpected,
        cpu_note=cpu.note,
        started_at=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        webhooks=hooks.tally.count(delivered) if hooks is not None else None,
    )


def saturated(phase: Phase) -> bool:
    """Accepted or delivered below 90 % of the offered rate, over the time the phase was
    offered (its requests' due times)."""
    if not phase.rate:
        return False
    sent = phase.sent.values()
    t0 = min(s.send_t for s in sent)
    accepted = [s for s in sent if s.status == 202]
    last_accept = max((s.accept_t for s in accepted), default=t0)
    firsts = [phase.arrivals[s.notification_id][0] for s in accepted
              if s.notification_id in phase.arrivals]  # fmt: skip
    span = len(phase.sent) / phase.rate
    accepted_rate = len(accepted) / max(last_accept - t0, span)
    delivered_rate = len(firsts) / max(max(firsts, default=t0) - t0, span)
    return min(accepted_rate, delivered_rate) < 0.9 * phase.rate


def _stack_processes(roots: list[int]) -> dict[str, int]:
    """The Tidings processes to profile: each root's children by service (or the root itself,
    the embedded default's one process)."""
    from tidings.bench.cpu import all_stats, descendants, service_name

    stats = all_stats()
    out: dict[str, int] = {}
    for root in roots:
        tree = descendants(root, stats)
        for pid in tree[1:] or tree:
            out[f"{service_name(pid)}"] = pid
    return out


async def _phase(
    config: BenchConfig,
    target: Target,
    sink: SinkProcess,
    cpu: Cpu,
    roots: list[int],
    first: int,
    n: int,
    rate: float | None,
    index: int,
    *,
    warmup: bool = False,
) -> Phase:
    loop = asyncio.get_running_loop()
    load = await Load(target.load_url, config.connections_for(rate)).open()
    sent: dict[str, Sent] = {}
    tally = [0, 0]  # answered 202, answered otherwise or not at all
    errors: list[str] = []
    seen: set[int] = set()
    done = asyncio.Event()
    profiler: Profiler | None = None
    if config.profile_dir is not None and not warmup:
        where = config.profile_dir if not config.curve else config.profile_dir / f"{rate:g}-per-s"
        pids = _stack_processes(roots) | {LOAD_NAME: os.getpid(), SINK_NAME: sink.pid}
        profiler = Profiler(where, pids) if n >= 20 else None
    profile_tasks: list[asyncio.Task[Any]] = []
    marks = (max(1, n // 10), max(1, n * 9 // 10))
    chain: list[int] = [first + min(n, max(1, config.concurrency))]  # closed loop: next index

    def send(i: int, send_t: float) -> None:
        rid = f"bench-{target.run_id}-{i}"
        record = sent[rid] = Sent(send_t)

        def answer(status: int, body: bytes) -> None:
            record.accept_t = time.perf_counter()
            record.status = status
            if status == 202:
                tally[0] += 1
                record.notification_id = str(orjson.loads(body)["data"]["notification_id"])
            else:
                tally[1] += 1
                if len(errors) < 10 or status not in seen:  # the first of each status too
                    seen.add(status)
                    errors.append(f"{status} {body[:200]!r}")
            answered = tally[0] + tally[1]
            if profiler is not None and answered in marks:
                step = profiler.start if answered == marks[0] else profiler.stop
                profile_tasks.append(loop.create_task(step(answered)))
            if answered == n:
                done.set()
            elif not rate and chain[0] < first + n:
                chain[0] += 1
                send(chain[0] - 1, time.perf_counter())

        load.send(target.request(i), answer)

    progress = Progress(n)
    phase_name = [f"{rate:g}/s" if rate and config.curve else "sending"]

    before = len(sink.tally.arrivals)

    async def report_progress() -> None:
        while True:
            delivered = len(sink.tally.arrivals) - before
            progress.show(phase_name[0], len(sent), tally[0], delivered, tally[1])
            await asyncio.sleep(1.0)

    cpu.begin()
    ticker = asyncio.create_task(report_progress())
    try:
        if rate:
            t0 = time.perf_counter()
            for i in range(n):
                # Open loop: request i is due at t0 + i/R, whether or not the earlier ones
                # were answered; its latency counts from when it was due.
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0.001:
                    await asyncio.sleep(delay)
                send(first + i, due)
        else:
            for i in range(first, chain[0]):
                send(i, time.perf_counter())
        await done.wait()
        load.close()
        phase_name[0] = "receiving"
        tally_ = sink.tally
        tally_.awaiting = {
            s.notification_id
            for s in sent.values()
            if s.status == 202 and s.notification_id not in tally_.arrivals
        }
        # Waits while mail keeps arriving: a backlog still draining is not lost. Stops when
        # --timeout seconds pass without a new arrival (a stall), or when all have arrived.
        deadline = time.perf_counter() + config.timeout_s
        while tally_.awaiting and time.perf_counter() < deadline:
            tally_.changed.clear()
            waiting = len(tally_.awaiting)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tally_.changed.wait(), 0.5)
            if len(tally_.awaiting) < waiting:
                deadline = time.perf_counter() + config.timeout_s
        used = cpu.end()
        profile = None
        if profile_tasks:
            results = await asyncio.gather(*profile_tasks)
            profile = results[-1] if len(results) > 1 else None
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
    progress.done()
    mine = {s.notification_id for s in sent.values() if s.notification_id}
    arrivals = {nid: list(t) for nid, t in sink.tally.arrivals.items() if nid in mine}
    mode = f"open loop at {rate:g}/s" if rate else f"closed loop, c={config.concurrency}"
    if warmup:
        mode = f"warm-up ({mode}), not in the figures after it"
    return Phase(mode, rate, sent, arrivals, used, errors, profile, warmup)
