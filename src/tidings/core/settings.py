"""One settings base for every service; each service subclasses it with its own fields.

Settings are read from ``TIDINGS_*`` environment variables once, at the entry point, and
passed down. Nothing here is read at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

ServiceName = Literal["gateway", "users", "templates", "email", "push"]
SERVICES: tuple[ServiceName, ...] = ("gateway", "users", "templates", "email", "push")


class TidingsSettings(BaseSettings):
    """Settings every service shares. Each field is ``TIDINGS_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="TIDINGS_", extra="ignore")

    # The three infrastructure URLs. With none of them set, Tidings runs on its embedded
    # default (SQLite, in-process bus, in-process cache) in one process.
    database_url: str | None = None
    amqp_url: str | None = None
    redis_url: str | None = None
    smtp_url: str | None = None

    host: str = "127.0.0.1"
    gateway_port: int = 8000
    users_port: int = 8001
    templates_port: int = 8002
    email_port: int = 8003
    push_port: int = 8004
    # Listen with SO_REUSEPORT, so several processes serve one port (the kernel spreads the
    # connections): `tidings up --replicas gateway=N` sets it for the gateway's replicas.
    reuse_port: bool = False
    # Where services find each other. Set: that address, always. Unset: the instances
    # registered in Redis (round robin), or the host and port above.
    users_url: str | None = None
    templates_url: str | None = None
    # The host other services should use to reach this one (default: TIDINGS_HOST, or
    # 127.0.0.1 when that is 0.0.0.0), and how often an instance renews its registration.
    advertise_host: str | None = None
    heartbeat_s: float = Field(default=2.0, gt=0)

    data_dir: Path = Path(".tidings")
    smtp_capture_port: int = 1025

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    http_timeout_s: float = 5.0
    cache_namespace: str = "tidings"
    user_cache_ttl_s: float = 60.0
    template_cache_ttl_s: float = 30.0
    prefetch: int = Field(default=50, ge=1)
    # Notifications with this priority or more take the priority lane (0-9; 10: none do).
    priority_lane_min: int = Field(default=7, ge=0, le=10)
    delivery_limit: int = Field(default=20, ge=1)

    # Retries of transient delivery failures (backoff with full jitter, fixed-TTL tiers).
    max_attempts: int = Field(default=5, ge=1)
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_cap_s: float = Field(default=300.0, gt=0)
    # A worker that claimed a notification and died holds it this long before another may
    # send it again: the window of the one possible duplicate.
    delivery_lease_s: float = Field(default=60.0, gt=0)
    # How long a notification may wait, from its first try, on an open breaker or an
    # unreachable dependency before it fails.
    max_wait_s: float = Field(default=3600.0, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    # The gateway's reconciler: every reconcile_every_s it requeues notifications whose
    # status has not moved for reconcile_after_s (the worker's delivery record settles them),
    # and fails one after reconcile_max_requeues requeues.
    reconcile_every_s: float = Field(default=60.0, gt=0)
    reconcile_after_s: float = Field(default=900.0, gt=0)
    reconcile_max_requeues: int = Field(default=3, ge=0)

    # Circuit breakers: consecutive connection-level failures to open, seconds before a probe.
    smtp_breaker_failures: int = Field(default=5, ge=1)
    smtp_breaker_reset_s: float = Field(default=60.0, gt=0)
    templates_breaker_failures: int = Field(default=3, ge=1)
    templates_breaker_reset_s: float = Field(default=30.0, gt=0)
    users_breaker_failures: int = Field(default=3, ge=1)
    users_breaker_reset_s: float = Field(default=30.0, gt=0)

    # PostgreSQL from the HTTP services (docs/delivery.md, "PostgreSQL down"): how long a
    # connect, a statement and a wait for a pooled connection may take before the request
    # answers 503. They bound a request's wait on a database that hangs.
    db_connect_timeout_s: float = Field(default=1.0, gt=0)
    db_statement_timeout_s: float = Field(default=1.0, gt=0)
    db_pool_timeout_s: float = Field(default=1.0, gt=0)
    # After this many such failures in a row, requests answer 503 at once for the reset time
    # (then one probe goes), instead of each waiting for its own timeout.
    db_breaker_failures: int = Field(default=1, ge=1)
    db_breaker_reset_s: float = Field(default=1.0, gt=0)
    # Redis (docs/delivery.md, "Redis down"): socket timeouts, and a breaker so a Redis
    # that is down costs a request nothing once it has failed this many times in a row.
    redis_connect_timeout_s: float = Field(default=0.25, gt=0)
    redis_timeout_s: float = Field(default=0.5, gt=0)
    redis_breaker_failures: int = Field(default=3, ge=1)
    redis_breaker_reset_s: float = Field(default=5.0, gt=0)

    # Credentials. Unset, `tidings up` makes them at start (and prints the admin key);
    # `tidings run SERVICE` needs them set, the same in every process.
    admin_api_key: SecretStr | None = None
    # Signs users' access tokens and the principal tokens the gateway passes to services.
    secret_key: SecretStr | None = None
    # What the services present to each other.
    service_token: SecretStr | None = None
    access_token_ttl_s: float = Field(default=900.0, gt=0)
    refresh_token_ttl_s: float = Field(default=14 * 86400.0, gt=0)
    # Rate limits (token buckets): per API key (a key may have its own), per recipient, and
    # login attempts per client address.
    rate_limit_per_s: float = Field(default=100.0, gt=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    recipient_rate_per_s: float = Field(default=1.0, gt=0)
    recipient_burst: int = Field(default=30, ge=1)
    login_rate_per_s: float = Field(default=0.5, gt=0)
    login_burst: int = Field(default=10, ge=1)
    # Requests per user's access token (per user), and authentication attempts that are
    # refused or not yet verified (no credential, an unknown key) per client address.
    user_rate_per_s: float = Field(default=20.0, gt=0)
    user_burst: int = Field(default=60, ge=1)
    auth_failure_rate_per_s: float = Field(default=0.5, gt=0)
    auth_failure_burst: int = Field(default=30, ge=1)
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated
    # addresses or networks, "*" for any); empty: none, the client is the TCP peer.
    forwarded_allow_ips: str = ""
    # Bearer token Prometheus sends to /metrics (the admin key is accepted too); unset:
    # only the admin key.
    metrics_token: SecretStr | None = None
    # Browser origins allowed to call the API (comma-separated; empty: none).
    cors_origins: str = ""
    gateway_url: str | None = None
    # The gateway's public address, for links in emails (one-click unsubscribe); default:
    # the gateway's own address. https in production.
    public_url: str | None = None

    email_from: str = "Tidings <no-reply@tidings.localhost>"
    # DKIM: a PEM private key turns signing on; the public key goes in DNS at
    # <selector>._domainkey.<domain> (domain: the From address's, unless set).
    dkim_private_key: SecretStr | None = None
    # Verifies Mailgun's signed event webhooks (POST /api/v1/webhooks/mailgun/); unset: off.
    mailgun_webhook_signing_key: SecretStr | None = None
    dkim_selector: str = "tidings"
    dkim_domain: str | None = None
    # The email transport tried first; the other is the failover when it is configured.
    email_transport: Literal["smtp", "mailgun"] = "smtp"
    mailgun_api_key: SecretStr | None = None
    mailgun_domain: str | None = None
    mailgun_base_url: str = "https://api.mailgun.net"
    smtp_pool_size: int = Field(default=4, ge=1)
    smtp_timeout_s: float = 10.0
    smtp_password: SecretStr | None = None
    # A user name and password go over TLS only (smtps://, or STARTTLS when the server offers
    # it); true lets them go in clear, for a development relay on a trusted network.
    smtp_allow_plaintext_auth: bool = False

    @property
    def embedded(self) -> bool:
        """True when no infrastructure URL is set: the single-process embedded default."""
        return not (self.database_url or self.amqp_url or self.redis_url)

    def secret(self, name: Literal["admin_api_key", "secret_key", "service_token"]) -> str:
        value: SecretStr | None = getattr(self, name)
        if value is None:
            raise ValueError(f"TIDINGS_{name.upper()} is not set")
        return value.get_secret_value()

    def port_of(self, service: ServiceName) -> int:
        ports: dict[str, int] = {
            "gateway": self.gateway_port,
            "users": self.users_port,
            "templates": self.templates_port,
            "email": self.email_port,
            "push": self.push_port,
        }
        return ports[service]

    def advertised_url(self, service: ServiceName) -> str:
        host = self.advertise_host or ("127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host)
        return f"http://{host}:{self.port_of(service)}"

    def discovers(self, service: Literal["users", "templates"]) -> bool:
        """Found through the registry: Redis is there and no static URL is set."""
        explicit = self.users_url if service == "users" else self.templates_url
        return bool(self.redis_url) and explicit is None

    def public_base(self) -> str:
        return (self.public_url or self.url_of("gateway")).rstrip("/")

    def url_of(self, service: Literal["gateway", "users", "templates"]) -> str:
        explicit = {
            "gateway": self.gateway_url,
            "users": self.users_url,
            "templates": self.templates_url,
        }[service]
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


def async_database_url(url: str) -> str:
    """Accept a plain ``postgresql://`` URL and name the async driver for SQLAlchemy."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url
