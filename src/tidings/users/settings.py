from __future__ import annotations

from pydantic import Field

from tidings.core.settings import TidingsSettings


class UsersSettings(TidingsSettings):
    # Optional database of its own; default: the shared TIDINGS_DATABASE_URL, schema "users".
    users_database_url: str | None = None
    # Accept plain-http Web Push endpoints on loopback addresses (development and tests).
    webpush_allow_insecure: bool = False
    # Devices per user (live and dead; dead ones make room first), and registrations per user:
    # every device is a server the push worker will call, chosen by the user.
    max_devices_per_user: int = Field(default=100, ge=1, le=1000)
    device_register_rate_per_s: float = Field(default=0.2, gt=0)
    device_register_burst: int = Field(default=20, ge=1)

    @property
    def store_url(self) -> str:
        return self.database_for("users", self.users_database_url)
