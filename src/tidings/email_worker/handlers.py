"""How the email worker delivers one notification: template, render, compose, sign, send
through the transports (each behind its breaker, with failover). Retries, dead letters,
de-duplication and reports are core's DeliveryFlow."""

from __future__ import annotations

from dataclasses import replace

from tidings.core.auth import mailto_unsubscribe_tag, preferences_token, unsubscribe_token
from tidings.core.errors import PermanentError
from tidings.core.logs import current_correlation_id
from tidings.core.lookups import TemplateDirectory
from tidings.core.messages import NotificationMessage
from tidings.email_worker.compose import compose
from tidings.email_worker.dkim_signer import DkimSigner
from tidings.email_worker.senders import EmailSender
from tidings.email_worker.sent import SentMail
from tidings.email_worker.settings import EmailSettings


class EmailDelivery:
    def __init__(
        self,
        settings: EmailSettings,
        templates: TemplateDirectory,
        sender: EmailSender,
        signer: DkimSigner | None = None,
        sent: SentMail | None = None,
    ) -> None:
        self.signer = signer
        # Where the email as sent is kept for the dashboard (email_worker.sent).
        self.sent = sent
        self.templates = templates
        self.sender = sender
        self.from_address = settings.sender
        self.secret_key = settings.secret("secret_key")
        self.public_base = settings.public_base()
        self.envelope_from = settings.envelope_from
        # The mailto: unsubscribe reaches the bounce receiver; without one, only the URL.
        self.mail_unsubscribes = settings.bounce_port is not None
        self.bounce_local_part = settings.bounce_local_part
        self.domain = settings.sender.domain

    def unsubscribe_mailto(self, notification_id: str) -> str | None:
        if not self.mail_unsubscribes:
            return None
        tag = mailto_unsubscribe_tag(self.secret_key, notification_id)
        return f"{self.bounce_local_part}+{tag}@{self.domain}"

    async def __call__(self, n: NotificationMessage) -> str:
        rendered = await self.templates.render("email", n)
        if not n.recipient.email:
            raise PermanentError("the user has no email address")
        # The template's category (a cache hit: render just read it): the unsubscribe turns
        # off that category only; a critical one's emails carry none (docs/decisions.md).
        template = await self.templates.get(n.template_code, "email", n.language)
        category, critical = template.get("category"), bool(template.get("critical"))
        user_id = n.recipient.user_id
        try:
            token = unsubscribe_token(self.secret_key, user_id, "email", category)
            email = compose(
                n,
                rendered,
                sender=self.from_address,
                correlation_id=current_correlation_id(),
                unsubscribe_url=None if critical else f"{self.public_base}/unsubscribe/{token}/",
                unsubscribe_mailto=None if critical else self.unsubscribe_mailto(n.notification_id),
                preferences_url=f"{self.public_base}/preferences/"
                f"{preferences_token(self.secret_key, user_id)}/",
            )
        except (ValueError, TypeError) as exc:  # e.g. an address compose refuses
            raise PermanentError(f"cannot build the email: {exc}") from exc
        if self.signer is not None:
            email = replace(email, raw=await self.signer.sign(email.raw))
        # The transports, each behind its breaker, with failover: senders/failover.py.
        reply = await self.sender.send(email, envelope_from=self.envelope_from(n.notification_id))
        if self.sent is not None:
            await self.sent.record(n.notification_id, n.round, n.attempt, email.raw)
        return reply
