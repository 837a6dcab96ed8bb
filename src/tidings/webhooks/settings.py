"""The webhooks worker's settings: its schedule, bounds and safety switches."""

from __future__ import annotations

from pydantic import Field

from tidings.core.settings import TidingsSettings


class WebhooksSettings(TidingsSettings):
    gateway_database_url: str | None = Field(
        default=None,
        description="a database of the gateway's own. Unset: `TIDINGS_DATABASE_URL`, schema "
        "`gateway`",
    )
    webhook_retry_schedule_s: list[float] = Field(
        default=[5, 300, 1800, 7200, 18000, 36000, 50400],
        min_length=1,
        description="the waits before each retry of an event, seconds, as a JSON list (5 s, "
        "5 min, 30 min, 2 h, 5 h, 10 h, 14 h: about 32 h in all); after the last the event is "
        "`failed` (it can be replayed)",
    )
    webhook_retry_jitter: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        description="each wait is drawn uniformly within ± this fraction of its schedule entry",
    )
    webhook_poll_s: float = Field(
        default=0.25,
        gt=0,
        description="how often the worker looks for captured events and due messages when "
        "it found none the last time",
    )
    webhook_batch_size: int = Field(
        default=200, ge=1, description="events fanned out, or messages claimed, at once"
    )
    webhook_concurrency: int = Field(
        default=64, ge=1, description="requests in flight per worker process, all endpoints"
    )
    webhook_endpoint_concurrency: int = Field(
        default=8,
        ge=1,
        description="requests in flight per endpoint per worker process: a slow receiver holds "
        "at most this many slots",
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, description="an attempt's total deadline (connect, send, answer)"
    )
    webhook_lease_s: float = Field(
        default=60.0,
        gt=0,
        description="how long a claimed message is held before another worker may send it "
        "(a worker killed mid-request: the one possible duplicate); above the deadline",
    )
    webhook_response_bytes: int = Field(
        default=4096,
        ge=0,
        description="the most of an answer read and kept (the attempt's excerpt); the rest "
        "is not read",
    )
    webhook_disable_after_s: float = Field(
        default=5 * 86400,
        gt=0,
        description="an endpoint that has not succeeded for this long since its first "
        "failure is disabled (an `endpoint.disabled` event and a warning)",
    )
    webhook_breaker_failures: int = Field(
        default=5,
        ge=1,
        description="per-endpoint breaker: failures in a row (timeouts, refused connections, "
        "5xx, 429) that open it; while open its messages wait, no attempt spent",
    )
    webhook_breaker_reset_s: float = Field(
        default=30.0, gt=0, description="seconds before that breaker lets a probe through"
    )
    webhook_retention_s: float = Field(
        default=7 * 86400,
        gt=0,
        description="delivered messages (and their attempts) older than this are deleted by "
        "the worker; failed and pending ones are kept (failed ones can be replayed)",
    )
    webhook_retention_every_s: float = Field(
        default=300.0,
        gt=0,
        description="how often the worker looks for delivered messages past "
        "`TIDINGS_WEBHOOK_RETENTION_S`",
    )
    webhook_retention_batch: int = Field(
        default=1000,
        ge=1,
        description="delivered messages deleted per transaction (then the next batch, until "
        "none is left): a short lock, whatever the backlog",
    )
    webhook_nice: int = Field(
        default=10,
        ge=0,
        le=19,
        description="added to the niceness of the worker's process (`tidings run webhooks`) "
        "when it starts: on cores it shares with the delivery path, the webhooks take what "
        "email and push leave (0: the same priority). The embedded default's single process "
        "is left alone",
    )
    webhook_allow_insecure: bool = Field(
        default=False,
        description="development only: accept `http://` endpoints on loopback addresses "
        "(at registration and at send time); private and link-local addresses never pass",
    )

    @property
    def store_url(self) -> str:
        return self.database_for("gateway", self.gateway_database_url)
