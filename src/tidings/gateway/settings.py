"""The gateway's settings: its API's limits, the relay, the reconciler, its caches, and what
it serves for the other channels (the VAPID public key, the Mailgun webhook)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from tidings.core.settings import TidingsSettings


class GatewaySettings(TidingsSettings):
    gateway_database_url: str | None = Field(
        default=None,
        description="a database of the gateway's own. Unset: `TIDINGS_DATABASE_URL`, schema "
        "`gateway`",
    )
    email_worker_url: str | None = Field(
        default=None,
        description="the email worker's HTTP address, where the dashboard reads each email as "
        "sent. Unset: this host and `TIDINGS_EMAIL_PORT`",
    )
    # Rate limits (token buckets, in Redis): per API key (a key may have its own), per
    # recipient, per user's access token, login attempts and failed authentications per
    # client address.
    rate_limit_per_s: float = Field(
        default=100.0,
        ge=0,
        description="requests per second each API key may make, unless the key has its own; "
        "past it, 429 with `Retry-After` (0: no limit for keys without their own)",
    )
    rate_limit_burst: int = Field(default=200, ge=1, description="that bucket's burst")
    recipient_rate_per_s: float = Field(
        default=1.0,
        ge=0,
        description="notifications per second one user may be sent (skipped ones do not "
        "count); past it, 429 (a rejected item in a batch); 0: no limit",
    )
    recipient_burst: int = Field(default=30, ge=1, description="that bucket's burst")
    login_rate_per_s: float = Field(
        default=0.5,
        gt=0,
        description="login and refresh attempts per client address (the API's and the "
        "dashboard's, each its own bucket)",
    )
    login_burst: int = Field(default=10, ge=1, description="that bucket's burst")
    user_rate_per_s: float = Field(
        default=20.0,
        gt=0,
        description="requests per second a user's access token may make (per user, whatever "
        "the address)",
    )
    user_burst: int = Field(default=60, ge=1, description="that bucket's burst")
    auth_failure_rate_per_s: float = Field(
        default=0.5,
        gt=0,
        description="per client address: authentications that fail (no credential, a wrong "
        "one) or need a look-up to tell (an API key not yet known); past it 429, before any "
        "look-up",
    )
    auth_failure_burst: int = Field(default=30, ge=1, description="that bucket's burst")

    access_log_sample: int = Field(
        default=100,
        ge=0,
        description="the gateway's request log: one line per answer that is not a 2xx, and "
        "of the 2xx one in this many per route and method, the first included (`1` logs "
        "every request, `0` none of the 2xx); a notification's own line says what became "
        "of it",
    )

    user_cache_ttl_s: float = Field(
        default=60.0,
        description="how long the gateway trusts a cached user (the last known copy is kept "
        "longer, for outages)",
    )
    priority_lane_min: int = Field(
        default=7,
        ge=0,
        le=10,
        description="notifications with this `priority` or more go through the channel's "
        "priority queue (`email.priority.queue`, `push.priority.queue`), consumed beside the "
        "normal one, so they overtake a backlog; `10` turns the lane off",
    )
    relay_batch_size: int = Field(
        default=200, description="outbox rows the relay publishes per transaction"
    )
    relay_poll_s: float = Field(
        default=1.0,
        description="the relay's safety-net poll, seconds (it is woken at once after each "
        "commit; the poll picks up rows left by another replica or a failed publish)",
    )
    reconcile_every_s: float = Field(
        default=60.0, gt=0, description="how often the gateway's reconciler looks"
    )
    reconcile_after_s: float = Field(
        default=900.0,
        gt=0,
        description="how long a `pending` notification's status must not have moved before "
        "the reconciler requeues it (the worker's delivery record settles it)",
    )
    reconcile_max_requeues: int = Field(
        default=3, ge=0, description="after how many requeues it fails the notification instead"
    )
    dashboard_samples_keep_s: float = Field(
        default=7200.0,
        ge=3600,
        description="how long the dashboard overview's per-minute rows (each replica's "
        "figures) are kept, then deleted by their writer as each minute ends; at least the "
        "overview's hour",
    )
    broadcast_page_size: int = Field(
        default=500,
        ge=1,
        le=5000,
        description="subscribers a broadcast's fan-out makes notifications for per step "
        "(one look-up of their users, one accept, then the cursor moves on)",
    )
    broadcast_lease_s: float = Field(
        default=30.0,
        gt=0,
        description="how long a gateway's hold on a broadcast's fan-out lasts, renewed at "
        "every page, on the database's clock: a gateway that dies mid-broadcast is replaced "
        "(by another replica, or itself after a restart) once it has run out",
    )
    broadcast_poll_s: float = Field(
        default=2.0,
        gt=0,
        description="how often an idle gateway looks for a broadcast to take (a new one "
        "wakes the replica that accepted it at once)",
    )
    vapid_public_key: str | None = Field(
        default=None,
        description="the VAPID public key (`tidings vapid generate`), served to browsers at "
        "`/api/v1/push/vapid-public-key/`; see [push.md](push.md). Unset: that route answers 404 "
        "(the embedded default makes a pair and keeps it)",
    )
    mailgun_webhook_signing_key: SecretStr | None = Field(
        default=None,
        description="verifies Mailgun's signed event webhooks at "
        "`POST /api/v1/webhooks/mailgun/`. Unset: the webhook answers 403",
    )

    # Outbound webhooks' endpoints API (the worker has its own settings).
    webhook_allow_insecure: bool = Field(
        default=False,
        description="development only: accept `http://` webhook endpoints on loopback "
        "addresses (the webhooks worker's setting of the same name must agree)",
    )
    webhook_rotation_grace_s: float = Field(
        default=86400.0,
        ge=0,
        description="after a secret rotation, how long the old secret still signs beside the "
        "new one (each request carries both signatures)",
    )

    @property
    def store_url(self) -> str:
        return self.database_for("gateway", self.gateway_database_url)
