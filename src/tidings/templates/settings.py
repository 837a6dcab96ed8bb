"""The templates service's settings: only where its store is; the rest is shared (core)."""

from __future__ import annotations

from pydantic import Field

from tidings.core.settings import TidingsSettings


class TemplatesSettings(TidingsSettings):
    templates_database_url: str | None = Field(
        default=None,
        description="a database of the templates service's own. Unset: `TIDINGS_DATABASE_URL`, "
        "schema `templates`",
    )

    @property
    def store_url(self) -> str:
        return self.database_for("templates", self.templates_database_url)
