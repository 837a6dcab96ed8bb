from __future__ import annotations

from tidings.core.settings import TidingsSettings


class UsersSettings(TidingsSettings):
    # Optional database of its own; default: the shared TIDINGS_DATABASE_URL, schema "users".
    users_database_url: str | None = None
    # Accept plain-http Web Push endpoints on loopback addresses (development and tests).
    webpush_allow_insecure: bool = False

    @property
    def store_url(self) -> str:
        return self.database_for("users", self.users_database_url)
