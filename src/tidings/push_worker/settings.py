"""The push worker's settings: Web Push (VAPID), FCM, and its calls to push services."""

from __future__ import annotations

from pydantic import Field, SecretStr

from tidings.core.settings import WorkerSettings


class PushSettings(WorkerSettings):
    push_database_url: str | None = Field(
        default=None,
        description="a database of the push worker's own for its delivery records. Unset: "
        "`TIDINGS_DATABASE_URL`, schema `push`",
    )
    # Web Push (VAPID, RFC 8292).
    vapid_private_key: SecretStr | None = Field(
        default=None,
        description="the VAPID private key the push worker signs with, as `tidings vapid "
        "generate` prints it (base64url of the raw 32-byte P-256 scalar; a base64url DER or "
        'PEM key works too). Unset: Web Push devices fail "not configured" (the embedded '
        "default makes a pair and keeps it)",
    )
    vapid_subject: str = Field(
        default="mailto:admin@tidings.localhost",
        description="VAPID `sub`: a `mailto:` or `https:` contact for the push services' operators",
    )
    webpush_allow_insecure: bool = Field(
        default=False,
        description="send to plain-http Web Push endpoints, on loopback only (development, tests)",
    )
    # FCM HTTP v1.
    fcm_service_account_file: str | None = Field(
        default=None,
        description="the FCM service-account key as a JSON file path. Unset (and no JSON): FCM "
        'devices fail "not configured"',
    )
    fcm_service_account_json: SecretStr | None = Field(
        default=None, description="the FCM service-account key as its JSON itself"
    )
    fcm_project_id: str | None = Field(
        default=None, description="Firebase project. Unset: the key's `project_id`"
    )
    fcm_base_url: str = Field(default="https://fcm.googleapis.com", description="FCM base URL")
    fcm_click_action: str | None = Field(
        default=None,
        description="`android.notification.click_action`: the intent action the app opens on a "
        "tap (the link itself travels in `data.link`). Unset: the app's launcher activity",
    )
    push_ttl_s: int = Field(
        default=86_400,
        ge=0,
        le=2_419_200,
        description="how long a push service keeps an undelivered push (Web Push `TTL`, "
        "Android `ttl`)",
    )
    push_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="timeout of calls to push services and FCM (per connect, read or write)",
    )
    # The servers of Web Push endpoints are users' choice: a call is bounded as a whole, and
    # so is how much of its answer is read.
    push_deadline_s: float = Field(
        default=15.0,
        gt=0,
        description="the longest one call to a push service or FCM may take, as a whole",
    )
    push_max_response_bytes: int = Field(
        default=65_536,
        ge=1024,
        description="how much of a push service's or FCM's answer is read; the rest is not",
    )
    push_breaker_failures: int = Field(
        default=5,
        ge=1,
        description="one breaker each for Web Push and FCM: consecutive connection-level "
        "failures that open it",
    )
    push_breaker_reset_s: float = Field(
        default=60.0, gt=0, description="seconds before a push breaker lets a probe through"
    )
    fcm_rate_per_s: float | None = Field(
        default=None,
        gt=0,
        description="sends per second to FCM, shared by every push worker (Redis); unset: "
        "unlimited. A 429 with `Retry-After` pauses every worker's FCM sends as long",
    )
    webpush_rate_per_s: float | None = Field(
        default=None,
        gt=0,
        description="sends per second to each Web Push origin (push service), shared by every "
        "push worker (Redis); unset: unlimited; a 429 pauses that origin only",
    )

    @property
    def store_url(self) -> str:
        return self.database_for("push", self.push_database_url)
