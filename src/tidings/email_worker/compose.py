"""Building the email: multipart text + HTML, and the headers DESIGN §1 fixes."""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from typing import Any
from uuid import UUID

from tidings.core.messages import NotificationMessage
from tidings.core.rendering import strip_header_breaks


def message_id(notification_id: str, domain: str) -> str:
    """The same on every attempt, so receivers can de-duplicate."""
    return f"<{notification_id}@{domain}>"


def verp_address(local_part: str, notification_id: str, domain: str) -> str:
    """The envelope sender (VERP): a bounce comes back to an address naming the notification."""
    return f"{local_part}+{notification_id}@{domain}"


def verp_notification_id(address: str, local_part: str) -> str | None:
    """The notification a bounce address names (``verp_address`` read back), or None."""
    local, at, _ = address.strip().strip("<>").rpartition("@")
    base, plus, tag = local.partition("+")
    if not at or not plus or base.lower() != local_part.lower():
        return None
    return as_notification_id(tag)


def as_notification_id(text: str) -> str | None:
    """``text`` if it is a notification id (a UUID), in canonical form; else None."""
    try:
        return str(UUID(text.strip()))
    except ValueError:
        return None


def compose(
    n: NotificationMessage,
    rendered: dict[str, Any],
    *,
    sender: Address,
    correlation_id: str,
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = Address(
        display_name=strip_header_breaks(n.recipient.name), addr_spec=n.recipient.email or ""
    )
    msg["Subject"] = strip_header_breaks(rendered["subject"])
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id(n.notification_id, sender.domain)
    msg["X-Request-ID"] = strip_header_breaks(n.request_id)
    msg["X-Correlation-ID"] = strip_header_breaks(correlation_id)
    msg["X-Tidings-Notification-ID"] = n.notification_id
    if unsubscribe_url:
        # RFC 2369 and RFC 8058: mail clients show an unsubscribe button that POSTs here.
        mailto = (
            f", <mailto:{unsubscribe_mailto}?subject=unsubscribe>" if unsubscribe_mailto else ""
        )
        msg["List-Unsubscribe"] = f"<{unsubscribe_url}>{mailto}"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(rendered["text_body"])
    msg.add_alternative(rendered["body"], subtype="html")
    return msg
