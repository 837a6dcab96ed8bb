from __future__ import annotations

from tidings.core.settings import TidingsSettings


class TemplatesSettings(TidingsSettings):
    # Optional database of its own; default: the shared TIDINGS_DATABASE_URL, schema "templates".
    templates_database_url: str | None = None

    @property
    def store_url(self) -> str:
        return self.database_for("templates", self.templates_database_url)
