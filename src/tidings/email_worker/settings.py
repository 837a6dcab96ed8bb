"""The email worker's settings: the From address, the transports (SMTP, Mailgun), DKIM and
the bounce receiver."""

from __future__ import annotations

from email.headerregistry import Address
from email.utils import parseaddr
from typing import Literal

from pydantic import Field, SecretStr

from tidings.core.settings import WorkerSettings
from tidings.email_worker.compose import verp_address


class EmailSettings(WorkerSettings):
    email_database_url: str | None = Field(
        default=None,
        description="a database of the email worker's own for its delivery records. Unset: "
        "`TIDINGS_DATABASE_URL`, schema `email`",
    )
    email_from: str = Field(
        default="Tidings <no-reply@tidings.localhost>",
        description="the From address; its domain is the `Message-ID` domain",
    )
    public_url: str | None = Field(
        default=None,
        description="the gateway's public base URL, for the one-click unsubscribe link in "
        "every email (https in production). Unset: the gateway's address",
    )
    email_transport: Literal["smtp", "mailgun"] = Field(
        default="smtp",
        description="the transport tried first: `smtp` or `mailgun`; the other one is the "
        "failover when it is configured (when the first one's breaker is open or it fails "
        "transiently)",
    )
    sent_mail_keep_s: float = Field(
        default=3 * 86400.0,
        ge=0,
        description="how long the email worker keeps each email as sent (its raw source) for "
        "the dashboard, then drops it; 0 keeps none (docs/decisions.md, personal data)",
    )
    sent_mail_purge_every_s: float = Field(
        default=60.0,
        gt=0,
        description="how often the email worker drops the copies past `TIDINGS_SENT_MAIL_KEEP_S`",
    )
    sent_mail_purge_batch: int = Field(
        default=1000,
        ge=1,
        description="copies dropped per look (one DELETE): a large backlog goes this many a "
        "look, bounded work",
    )
    smtp_url: str | None = Field(
        default=None,
        description="`smtp://[user:pass@]host:port` (STARTTLS when offered) or `smtps://…` "
        "(implicit TLS). Unset: the capture server `tidings up` starts",
    )
    smtp_capture_port: int = Field(
        default=1025,
        description="port of the built-in capture server (`tidings up` without `TIDINGS_SMTP_URL`)",
    )
    smtp_password: SecretStr | None = Field(
        default=None,
        description="the SMTP password, if you would rather not put it in the URL",
    )
    smtp_pool_size: int = Field(
        default=8,
        ge=1,
        description="SMTP connections each email worker keeps open and reuses (at most this "
        "many messages inside an SMTP dialogue at once; lower it for a mail server that "
        "allows fewer)",
    )
    smtp_timeout_s: float = Field(default=10.0, description="SMTP connect and command timeout")
    smtp_allow_plaintext_auth: bool = Field(
        default=False,
        description="send the SMTP user name and password without TLS (a development relay "
        "only); otherwise a server that offers no STARTTLS on `smtp://` gets no credentials "
        "and the email is held as a provider-auth failure",
    )
    smtp_breaker_failures: int = Field(
        default=5,
        ge=1,
        description="the SMTP circuit breaker: consecutive connection-level failures that open it",
    )
    smtp_breaker_reset_s: float = Field(
        default=60.0, gt=0, description="seconds before that breaker lets a probe through"
    )
    smtp_rate_per_s: float | None = Field(
        default=None,
        gt=0,
        description="sends per second to the SMTP relay, shared by every email worker "
        "(Redis); unset: unlimited. A throttled email waits, it spends no attempt",
    )
    mailgun_rate_per_s: float | None = Field(
        default=None,
        gt=0,
        description="sends per second to Mailgun, shared by every email worker (Redis); "
        "unset: unlimited. A 429 with `Retry-After` pauses every worker's sends as long",
    )
    mailgun_api_key: SecretStr | None = Field(
        default=None,
        description="Mailgun's HTTP API as a transport (`/v3/<domain>/messages.mime`, the same "
        "MIME message SMTP would send), with `TIDINGS_MAILGUN_DOMAIN`",
    )
    mailgun_domain: str | None = Field(default=None, description="the Mailgun sending domain")
    mailgun_base_url: str = Field(
        default="https://api.mailgun.net",
        description="Mailgun's base URL (`https://api.eu.mailgun.net` in the EU)",
    )
    dkim_private_key: SecretStr | None = Field(
        default=None,
        description="a PEM private key, RSA or Ed25519: every email is DKIM-signed, "
        "rsa-sha256 or ed25519-sha256 (RFC 8463) as the key is (relaxed/relaxed, "
        "List-Unsubscribe headers included). Unset: no signing",
    )
    dkim_selector: str = Field(
        default="tidings",
        description="where receivers find the public key: `<selector>._domainkey.<domain>`",
    )
    dkim_domain: str | None = Field(
        default=None, description="the DKIM signing domain. Unset: the From address's domain"
    )
    bounce_local_part: str = Field(
        default="bounces",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="the envelope sender (VERP) of every email is "
        "`<this>+<notification_id>@<domain of TIDINGS_EMAIL_FROM>`, so a bounce names the "
        "notification it is about; see [delivery.md](delivery.md#bounces-and-complaints)",
    )
    bounce_host: str = Field(
        default="127.0.0.1", description="the address the bounce receiver listens on"
    )
    bounce_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="the bounce receiver: an SMTP listener in the email worker for DSNs and "
        "ARF complaints (mail for the bounce addresses must be routed to it, an MX or a "
        "relay's transport). Unset: no receiver",
    )

    @property
    def store_url(self) -> str:
        return self.database_for("email", self.email_database_url)

    @property
    def smtp_target(self) -> str:
        """TIDINGS_SMTP_URL, or the built-in capture server that ``tidings up`` starts."""
        return self.smtp_url or f"smtp://127.0.0.1:{self.smtp_capture_port}"

    def public_base(self) -> str:
        return (self.public_url or self.url_of("gateway")).rstrip("/")

    @property
    def sender(self) -> Address:
        name, addr = parseaddr(self.email_from)
        user, _, domain = addr.partition("@")
        return Address(display_name=name, username=user, domain=domain or "localhost")

    def envelope_from(self, notification_id: str) -> str:
        """The VERP envelope sender (SMTP MAIL FROM) of one notification's email."""
        return verp_address(self.bounce_local_part, notification_id, self.sender.domain)
