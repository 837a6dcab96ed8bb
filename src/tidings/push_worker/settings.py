from __future__ import annotations

from pydantic import Field, SecretStr

from tidings.core.settings import TidingsSettings


class PushSettings(TidingsSettings):
    # Optional database of its own; default: the shared TIDINGS_DATABASE_URL, schema "push".
    push_database_url: str | None = None

    # Web Push (VAPID, RFC 8292). The private key as `tidings vapid generate` prints it
    # (base64url of the raw 32-byte P-256 scalar; a base64url DER or PEM key works too).
    # Unset: Web Push devices fail with a permanent "not configured" error.
    vapid_private_key: SecretStr | None = None
    # The `sub` claim: a mailto: or https: contact for the push services' operators.
    vapid_subject: str = "mailto:admin@tidings.localhost"
    # Plain-http endpoints on loopback only (development and tests).
    webpush_allow_insecure: bool = False

    # FCM HTTP v1: the service-account key (a JSON file path, or its JSON itself).
    fcm_service_account_file: str | None = None
    fcm_service_account_json: SecretStr | None = None
    # Default: the key's project_id.
    fcm_project_id: str | None = None
    fcm_base_url: str = "https://fcm.googleapis.com"
    # android.notification.click_action: the intent action the app opens on a tap (the
    # link itself travels in data.link). Unset: the app's launcher activity.
    fcm_click_action: str | None = None

    # How long a push service keeps an undelivered push (Web Push TTL, FCM ttl), seconds.
    push_ttl_s: int = Field(default=86_400, ge=0, le=2_419_200)
    push_timeout_s: float = Field(default=10.0, gt=0)
    # One call to a push service or FCM, as a whole (push_timeout_s is per connect or read),
    # and how much of its answer is read: the servers of Web Push endpoints are users' choice.
    push_deadline_s: float = Field(default=15.0, gt=0)
    push_max_response_bytes: int = Field(default=65_536, ge=1024)
    # One circuit breaker per provider (webpush, fcm): connection-level failures only.
    push_breaker_failures: int = Field(default=5, ge=1)
    push_breaker_reset_s: float = Field(default=60.0, gt=0)

    @property
    def store_url(self) -> str:
        return self.database_for("push", self.push_database_url)
