"""The settings every service shares; each service subclasses them with its own fields.

``TidingsSettings`` holds the infrastructure (URLs, where the services listen and find each
other, the data directory, logs, database and Redis timeouts and breakers, the shared
credentials, the cache); ``WorkerSettings`` adds the delivery flow's retry policy the two
workers share. Everything else belongs to one service, in that service's ``settings.py``.

Every field is ``TIDINGS_<FIELD>`` in the environment and has its meaning as its description:
``python -m tidings.settings_doc`` writes docs/settings.md from them. Settings are read from
the environment once, at the entry point, and passed down. Nothing here is read at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tidings.core.breaker import BreakerPolicy

ServiceName = Literal["gateway", "users", "templates", "email", "push", "webhooks"]
# The settings that hold a secret (SecretStr), by name: read through TidingsSettings.secret.
SecretName = Literal["admin_api_key", "secret_key", "service_token", "metrics_token"]
SERVICES: tuple[ServiceName, ...] = ("gateway", "users", "templates", "email", "push", "webhooks")
# After SIGTERM a process stops consuming and lets its handlers finish for
# TIDINGS_SHUTDOWN_GRACE_S; `tidings up` gives it that and this margin before SIGKILL.
STOP_MARGIN_S = 10.0


class TidingsSettings(BaseSettings):
    """Settings every service shares. Each field is ``TIDINGS_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="TIDINGS_", extra="ignore")

    # The three infrastructure URLs. With none of them set, Tidings runs on its embedded
    # default (SQLite, in-process bus, in-process cache) in one process.
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL, e.g. `postgresql://user@host:5432/db`; each service keeps its "
        "tables in its own schema (`gateway`, `users`, `templates`, `email`, `push`); a primary "
        "with standbys as `postgresql://user@/db?host=h1:5432&host=h2:5432&target_session_attrs"
        "=read-write` (connects to whichever is the primary: docs/clusters.md). Unset: "
        "SQLite files in `TIDINGS_DATA_DIR`",
    )
    amqp_url: str | None = Field(
        default=None,
        description="RabbitMQ, e.g. `amqp://guest:guest@127.0.0.1:5672/`; a cluster as its "
        "nodes' URLs separated by commas (connects to any live one, moves to another when it "
        "is lost: docs/clusters.md). Unset: the in-process bus",
    )
    amqp_quorum_size: int = Field(
        default=3,
        ge=1,
        description="replicas of each quorum queue Tidings creates (`x-quorum-initial-group-"
        "size`); the broker caps it at its node count, so 1 on a single node. A queue that "
        "exists already keeps its members",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis, e.g. `redis://127.0.0.1:6379/0`; behind Sentinel "
        "`redis+sentinel://host:26379,host2:26379/<master name>/<db>` (follows the master "
        "Sentinel names: docs/clusters.md). Unset: the in-process cache",
    )
    data_dir: Path = Field(
        default=Path(".tidings"),
        description="where the embedded default keeps its SQLite files, captured mail and the "
        "credentials it made (`credentials.json`, mode 600; `tidings up --reset` removes them)",
    )

    host: str = Field(
        default="127.0.0.1",
        description="the address every service listens on, each on its own port (below); with "
        "`tidings up --replicas`, replica *k* of a service other than the gateway listens on "
        "its port + 100·*k*",
    )
    gateway_port: int = Field(default=8000, description="the gateway's HTTP port")
    users_port: int = Field(default=8001, description="the users service's HTTP port")
    templates_port: int = Field(default=8002, description="the templates service's HTTP port")
    email_port: int = Field(
        default=8003, description="the email worker's HTTP port (`/health`, `/metrics`, `/docs`)"
    )
    push_port: int = Field(
        default=8004, description="the push worker's HTTP port (`/health`, `/metrics`, `/docs`)"
    )
    webhooks_port: int = Field(
        default=8005,
        description="the webhooks worker's HTTP port (`/health`, `/metrics`, `/docs`)",
    )
    reuse_port: bool = Field(
        default=False,
        description="listen with `SO_REUSEPORT`, so several processes share the port and the "
        "kernel spreads connections over them; `tidings up --replicas gateway=N` sets it for "
        "the gateway's replicas (one URL for clients)",
    )
    users_url: str | None = Field(
        default=None,
        description="where the other services find the users service. Unset, with Redis "
        "configured: every instance registers itself in Redis and callers spread over the "
        "live ones (round robin), falling back to `http://<host>:<port>`; set: that address "
        "always (a load balancer or a DNS name)",
    )
    templates_url: str | None = Field(
        default=None,
        description="where the other services find the templates service; as `TIDINGS_USERS_URL`",
    )
    gateway_url: str | None = Field(
        default=None,
        description="where the command line (`tidings send`, `status`, `doctor`, "
        "`dead-letters`, `api-keys` …) finds the gateway. Unset: `http://<host>:<gateway port>`",
    )
    advertise_host: str | None = Field(
        default=None,
        description="the host other services should use to reach this instance, in its "
        "discovery registration. Unset: `TIDINGS_HOST` (or `127.0.0.1` for `0.0.0.0`)",
    )
    heartbeat_s: float = Field(
        default=2.0,
        gt=0,
        description="how often an instance renews its discovery registration (it expires "
        "after 6 s without one)",
    )

    log_level: str = Field(default="INFO", description="log level")
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="`json` (one object per line, with `correlation_id`), `text` (a plain line "
        "each), or `auto`: text when stdout and stderr are a terminal, else JSON; either way "
        "unsubscribe tokens, JWTs, API keys and credential query parameters are written as "
        "`[redacted]`",
    )

    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="largest request body; larger gets 413"
    )
    http_timeout_s: float = Field(default=5.0, description="timeout of calls between services")
    forwarded_allow_ips: str = Field(
        default="",
        description="proxies whose `X-Forwarded-For`/`X-Forwarded-Proto` are believed, "
        "comma-separated addresses or networks (`10.0.0.0/8`), `*` for any; the client address "
        "of the per-address limits comes from there only when the peer is one of them. Empty: "
        "none, the client is the TCP peer",
    )
    cors_origins: str = Field(
        default="",
        description="browser origins allowed to call the API, comma-separated. Empty: no CORS",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="the Bearer token Prometheus presents to `/metrics` on every service "
        "(deploy/prometheus/prometheus.yml). Unset: only the admin key reads `/metrics`",
    )

    admin_api_key: SecretStr | None = Field(
        default=None,
        description="the admin credential (`Authorization: Bearer …`): every endpoint, API "
        "keys, dead letters. Unset: `tidings up` makes one and prints it (the embedded default "
        "keeps it in `TIDINGS_DATA_DIR`, where the command line finds it); `tidings run` needs it",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="signs users' access and refresh tokens, unsubscribe tokens and the "
        "principal tokens the gateway passes to the users and templates services; the same in "
        "every process. Unset: `tidings up` makes one (kept, embedded); `tidings run` needs it",
    )
    service_token: SecretStr | None = Field(
        default=None,
        description="the credential the services present to each other; the same in every "
        "process. Unset: `tidings up` makes one (kept, embedded); `tidings run` needs it",
    )

    prefetch: int = Field(
        default=200,
        ge=1,
        description="notifications a consumer holds unacknowledged at once (a worker's sends in "
        "flight are at most this: it bounds the throughput to prefetch ÷ the time a message "
        "spends in the worker; docs/decisions.md); a worker's consumer holds prefetch ÷ "
        "`TIDINGS_WORK_BATCH` messages",
    )
    work_batch: int = Field(
        default=10,
        ge=1,
        description="notifications the relay puts in one message to a worker's queue, at most "
        "(those it publishes together, for the same queue; 1: a message each). Set the same "
        "in the gateway and the workers",
    )
    delivery_limit: int = Field(
        default=20,
        ge=1,
        description="deliveries of one message before it is dead-lettered (quorum queue "
        "`x-delivery-limit`)",
    )
    shutdown_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="on SIGTERM, how long handlers in flight may finish before the connections "
        "close",
    )
    cache_namespace: str = Field(default="tidings", description="prefix of every Redis key")
    template_cache_ttl_s: float = Field(
        default=30.0, description="how long a cached template version is used"
    )

    # Circuit breakers of calls to the users and templates services: consecutive
    # connection-level failures to open, seconds before a probe.
    templates_breaker_failures: int = Field(
        default=3,
        ge=1,
        description="the breaker of calls to the templates service: consecutive "
        "connection-level failures that open it",
    )
    templates_breaker_reset_s: float = Field(
        default=30.0, gt=0, description="seconds before that breaker lets a probe through"
    )
    users_breaker_failures: int = Field(
        default=3, ge=1, description="the same for calls to the users service"
    )
    users_breaker_reset_s: float = Field(
        default=30.0, gt=0, description="seconds before that breaker lets a probe through"
    )

    @property
    def templates_breaker(self) -> BreakerPolicy:
        """The breaker of calls to the templates service, from the two fields above."""
        return BreakerPolicy(self.templates_breaker_failures, self.templates_breaker_reset_s)

    @property
    def users_breaker(self) -> BreakerPolicy:
        """The breaker of calls to the users service, from the two fields above."""
        return BreakerPolicy(self.users_breaker_failures, self.users_breaker_reset_s)

    db_connect_timeout_s: float = Field(
        default=1.0,
        gt=0,
        description="the HTTP services' PostgreSQL connect timeout: a database that refuses "
        "or hangs answers 503 with `Retry-After` instead of a wait; see "
        "[delivery.md](delivery.md#postgresql-down)",
    )
    db_statement_timeout_s: float = Field(
        default=1.0, gt=0, description="the HTTP services' PostgreSQL statement timeout"
    )
    db_pool_timeout_s: float = Field(
        default=1.0, gt=0, description="the HTTP services' wait for a pooled connection"
    )
    db_breaker_failures: int = Field(
        default=1,
        ge=1,
        description="the HTTP services' database breaker: after this many connect/statement "
        "failures or timeouts in a row, requests answer 503 at once for the reset time, then "
        "one probe goes",
    )
    db_breaker_reset_s: float = Field(
        default=1.0, gt=0, description="the database breaker's reset time"
    )
    redis_connect_timeout_s: float = Field(
        default=0.25, gt=0, description="Redis socket connect timeout"
    )
    redis_timeout_s: float = Field(default=0.5, gt=0, description="Redis socket read timeout")
    redis_breaker_failures: int = Field(
        default=3,
        ge=1,
        description="the Redis circuit breaker (one per client: cache, rate limits, discovery): "
        "consecutive failures that open it; while open, each use of Redis degrades or refuses "
        "at once, see [delivery.md](delivery.md#redis-down)",
    )
    redis_breaker_reset_s: float = Field(
        default=5.0, gt=0, description="seconds before the Redis breaker lets a probe through"
    )

    @property
    def embedded(self) -> bool:
        """True when no infrastructure URL is set: the single-process embedded default."""
        return not (self.database_url or self.amqp_url or self.redis_url)

    def secret(self, name: SecretName) -> str:
        """The secret's value; ValueError when it is not set."""
        value = self.secret_or_none(name)
        if value is None:
            raise ValueError(f"TIDINGS_{name.upper()} is not set")
        return value

    def secret_or_none(self, name: SecretName) -> str | None:
        """The secret's value, or None when it is not set (an optional credential)."""
        value: SecretStr | None = getattr(self, name)
        return value.get_secret_value() if value is not None else None

    def port_of(self, service: ServiceName) -> int:
        ports: dict[str, int] = {
            "gateway": self.gateway_port,
            "users": self.users_port,
            "templates": self.templates_port,
            "email": self.email_port,
            "push": self.push_port,
            "webhooks": self.webhooks_port,
        }
        return ports[service]

    def advertised_url(self, service: ServiceName) -> str:
        host = self.advertise_host or ("127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host)
        return f"http://{host}:{self.port_of(service)}"

    def discovers(self, service: Literal["users", "templates"]) -> bool:
        """Found through the registry: Redis is there and no static URL is set."""
        explicit = self.users_url if service == "users" else self.templates_url
        return bool(self.redis_url) and explicit is None

    def url_of(self, service: ServiceName, explicit: str | None = None) -> str:
        """Where ``service`` answers: its URL setting (``explicit``, for a URL setting of a
        service's own class, such as the gateway's ``email_worker_url``), else this host
        and the service's port."""
        explicit = explicit or {
            "gateway": self.gateway_url,
            "users": self.users_url,
            "templates": self.templates_url,
        }.get(service)
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return (explicit or f"http://{host}:{self.port_of(service)}").rstrip("/")

    def database_for(self, schema: str, override: str | None = None) -> str:
        """The SQLAlchemy URL a service's store uses.

        On PostgreSQL every service keeps its tables in its own schema (``schema``) of the
        configured database, or in the database named by its own override. On the embedded
        default each service has its own SQLite file.
        """
        url = override or self.database_url
        if url is None:
            return f"sqlite+aiosqlite:///{(self.data_dir / f'{schema}.db').resolve()}"
        return async_database_url(url)


class WorkerSettings(TidingsSettings):
    """What both delivery workers (email, push) add: the retry policy of core's flow."""

    max_attempts: int = Field(
        default=5,
        ge=1,
        description="delivery attempts of a transient failure before the notification fails",
    )
    retry_base_s: float = Field(
        default=1.0,
        gt=0,
        description="backoff after attempt *n*: uniform in [0, min(cap, base·2ⁿ⁻¹)] seconds, "
        "rounded down to a delay tier (1 s, 2 s, 4 s … 512 s)",
    )
    retry_cap_s: float = Field(default=300.0, gt=0, description="the backoff's cap, seconds")
    delivery_lease_s: float = Field(
        default=60.0,
        gt=0,
        description="how long a worker's claim on a notification holds, on the database's "
        "clock, renewed right before the send unless it still covers the send's deadline; a "
        "worker that dies mid-send is replaced after "
        "this (the window of the one possible duplicate)",
    )
    max_wait_s: float = Field(
        default=3600.0,
        gt=0,
        description="how long a notification may live, from its first try, whatever it waits "
        "on (an open breaker, an unreachable service, the worker's own database or the broker, "
        "another worker's lease, retries) before it fails",
    )
    bulk_prefetch: int = Field(
        default=20,
        ge=1,
        description="messages the bulk lane's consumer (`email.bulk.queue`, `push.bulk.queue`: "
        "broadcasts) holds unacknowledged at once, beside the other queues' `TIDINGS_PREFETCH`",
    )
    outbound_burst: int = Field(
        default=1,
        ge=1,
        description="sends a transport's rate limit lets through at once before it paces them "
        "(`TIDINGS_SMTP_RATE_PER_S` and the others; 1: evenly spaced)",
    )
    outbound_queue_s: float = Field(
        default=5.0,
        gt=0,
        description="how far ahead a send may book its turn under a transport's rate limit "
        "and wait for it in the worker; past that the message waits in a delay queue (no "
        "attempt spent). A broadcast's sends book at most a fiftieth of it, so a transactional "
        "send waits at most that behind them",
    )


def async_database_url(url: str) -> str:
    """Accept a plain ``postgresql://`` URL and name the async driver for SQLAlchemy."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url
