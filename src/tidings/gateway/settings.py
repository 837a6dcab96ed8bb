from __future__ import annotations

from tidings.core.settings import TidingsSettings


class GatewaySettings(TidingsSettings):
    # Optional database of its own; default: the shared TIDINGS_DATABASE_URL, schema "gateway".
    gateway_database_url: str | None = None
    # How many outbox rows the relay publishes per transaction.
    relay_batch_size: int = 200
    # The relay is woken at once after each commit; this is only a safety net for rows left
    # behind by another replica or by a failed publish.
    relay_poll_s: float = 1.0
    # Served to browsers at /api/v1/push/vapid-public-key/ (see docs/push.md).
    vapid_public_key: str | None = None

    @property
    def store_url(self) -> str:
        return self.database_for("gateway", self.gateway_database_url)
