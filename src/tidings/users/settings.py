"""The users service's settings: users' tokens and their push devices."""

from __future__ import annotations

from pydantic import Field

from tidings.core.settings import TidingsSettings


class UsersSettings(TidingsSettings):
    users_database_url: str | None = Field(
        default=None,
        description="a database of the users service's own. Unset: `TIDINGS_DATABASE_URL`, "
        "schema `users`",
    )
    access_token_ttl_s: float = Field(
        default=900.0, gt=0, description="lifetime of a user's access token"
    )
    refresh_token_ttl_s: float = Field(
        default=14 * 86400.0, gt=0, description="lifetime of a user's refresh token"
    )
    webpush_allow_insecure: bool = Field(
        default=False,
        description="accept plain-http Web Push endpoints, on loopback only (development, tests)",
    )
    # Every device is a server the push worker will call, chosen by the user.
    max_devices_per_user: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="push devices a user may have (live and dead; at the cap the oldest dead "
        "ones make room, else 409)",
    )
    device_register_rate_per_s: float = Field(
        default=0.2,
        gt=0,
        description="device registrations per user (token bucket; 429 with `Retry-After` past it)",
    )
    device_register_burst: int = Field(default=20, ge=1, description="that bucket's burst")

    @property
    def store_url(self) -> str:
        return self.database_for("users", self.users_database_url)
