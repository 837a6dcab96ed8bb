from __future__ import annotations

from email.headerregistry import Address
from email.utils import parseaddr

from pydantic import Field

from tidings.core.settings import TidingsSettings
from tidings.email_worker.compose import verp_address


class EmailSettings(TidingsSettings):
    # Optional database of its own; default: the shared TIDINGS_DATABASE_URL, schema "email".
    email_database_url: str | None = None
    # The envelope sender of every email is <bounce_local_part>+<notification id>@<the domain
    # of TIDINGS_EMAIL_FROM> (VERP), so a bounce names the notification it is about.
    bounce_local_part: str = Field(default="bounces", pattern=r"^[A-Za-z0-9._-]+$")
    # The bounce receiver (an SMTP listener in this process) runs when a port is set; mail
    # for that domain's bounce addresses must be routed to it (an MX or a relay's transport).
    bounce_host: str = "127.0.0.1"
    bounce_port: int | None = Field(default=None, ge=0, le=65535)

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

    def envelope_from(self, notification_id: str) -> str:
        """The VERP envelope sender (SMTP MAIL FROM) of one notification's email."""
        return verp_address(self.bounce_local_part, notification_id, self.sender.domain)
