from __future__ import annotations

from email.headerregistry import Address
from email.utils import parseaddr

from tidings.core.settings import TidingsSettings


class EmailSettings(TidingsSettings):
    # Optional database of its own; default: the shared TIDINGS_DATABASE_URL, schema "email".
    email_database_url: str | None = None

    @property
    def store_url(self) -> str:
        return self.database_for("email", self.email_database_url)

    @property
    def smtp_target(self) -> str:
        """TIDINGS_SMTP_URL, or the built-in capture server that ``tidings up`` starts."""
        return self.smtp_url or f"smtp://127.0.0.1:{self.smtp_capture_port}"

    @property
    def sender(self) -> Address:
        name, addr = parseaddr(self.email_from)
        user, _, domain = addr.partition("@")
        return Address(display_name=name, username=user, domain=domain or "localhost")
