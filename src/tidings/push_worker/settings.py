from __future__ import annotations

from tidings.core.settings import TidingsSettings


class PushSettings(TidingsSettings):
    # Optional database of its own; default: the shared TIDINGS_DATABASE_URL, schema "push".
    push_database_url: str | None = None

    @property
    def store_url(self) -> str:
        return self.database_for("push", self.push_database_url)
