from __future__ import annotations

from tidings.core.settings import TidingsSettings


class UsersSettings(TidingsSettings):
    # Optional database of its own; default: the shared TIDINGS_DATABASE_URL, schema "users".
    users_database_url: str | None = None

    @property
    def store_url(self) -> str:
        return self.database_for("users", self.users_database_url)
