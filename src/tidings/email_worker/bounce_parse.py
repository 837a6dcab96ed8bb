"""Reading what comes back to the bounce address, with the standard ``email`` package: RFC 3464
delivery status notifications (DSNs) and RFC 5965 (ARF) feedback reports. Pure: a message in,
a ``Report`` out, or None when it is neither (or nothing to act on)."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.parser import HeaderParser
from email.utils import getaddresses
from typing import Literal

from tidings.email_worker.compose import as_notification_id

Kind = Literal["bounce", "soft_bounce", "complaint"]

_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})")
# Status subjects that speak of the receiving system, the message or our standing with the
# receiver (3: mail system, 6: message content, 7: security or policy, e.g. a blocklisting or
# a DMARC failure), not of the address: the notification fails, the address stays usable.
# Suppressing on these would take out every recipient at once when, say, our IP is listed.
_NOT_THE_ADDRESS = frozenset({"3", "6", "7"})
# RFC 5965 feedback types that mean "this recipient does not want this mail". Others
# (not-spam, auth-failure, other) are logged, not acted on.
COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus"})
_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_ORIGINAL_TYPES = ("message/rfc822", "message/global")
_HEADERS_TYPES = ("text/rfc822-headers", "message/global-headers")
_MAX_TEXT = 300


@dataclass(frozen=True)
class Report:
    kind: Kind
    # The address the report is about (Final-Recipient, Original-Rcpt-To or the original's
    # To); None when the reporter left it out or redacted it.
    recipient: str | None
    # The enhanced status code (``5.1.1``), or the feedback type of a complaint.
    code: str
    # The remote server's own words (Diagnostic-Code), whitespace collapsed.
    diagnostic: str
    # Whether the address is to go on the suppression list.
    suppress: bool
    # The notification named by the original message's headers: the fallback attribution.
    original_id: str | None


def read_message(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # policy.default makes EmailMessage
    return message


def parse_report(message: EmailMessage) -> Report | None:
    """A DSN or ARF report about one of our messages; None for anything else."""
    if message.get_content_type() != "multipart/report":
        return None
    report_type = str(message.get_param("report-type", "")).strip().lower()
    parts = list(message.iter_parts())
    original = _original_headers(parts)
    if report_type in ("delivery-status", "global-delivery-status"):
        return _dsn(parts, original)
    if report_type == "feedback-report":
        return _arf(parts, original)
    return None


def _dsn(parts: Sequence[Message], original: Message | None) -> Report | None:
    status_part = next((p for p in parts if p.get_content_type() in _DSN_TYPES), None)
    if status_part is None:
        return None
    # The first block holds the per-message fields, each further one a recipient's.
    recipients = _field_blocks(status_part)[1:]
    failed = [b for b in recipients if _text(b, "Action").lower() == "failed"]
    delayed = [b for b in recipients if _text(b, "Action").lower() == "delayed"]
    # One recipient per email is what Tidings sends; if a relay reports several, the
    # worst outcome speaks for the notification. Success DSNs (delivered, relayed,
    # expanded) carry nothing to act on.
    if not (failed or delayed):
        return None
    block = (failed or delayed)[0]
    match = _STATUS.match(_text(block, "Status"))
    code = ".".join(match.groups()) if match else "5.0.0" if failed else "4.0.0"
    klass, subject, _ = code.split(".")
    # Action: failed is final even with a 4.x.x status (the relay gave up, e.g. 4.4.7
    # expired): the email never arrived, so the notification fails; only a permanent
    # (5.x.x) failure about the address suppresses it.
    return Report(
        kind="bounce" if failed else "soft_bounce",
        recipient=_address(_text(block, "Final-Recipient") or _text(block, "Original-Recipient")),
        code=code,
        diagnostic=_after_type(_text(block, "Diagnostic-Code")),
        suppress=bool(failed) and klass == "5" and subject not in _NOT_THE_ADDRESS,
        original_id=_notification_of(original),
    )


def _arf(parts: Sequence[Message], original: Message | None) -> Report | None:
    feedback = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if feedback is None:
        return None
    blocks = _field_blocks(feedback)
    fields = blocks[0] if blocks else Message()
    feedback_type = _text(fields, "Feedback-Type").lower()
    if feedback_type not in COMPLAINT_TYPES:
        return None
    recipient = _address(_text(fields, "Original-Rcpt-To"))
    if recipient is None and original is not None:
        recipient = _address(_text(original, "To"))
    return Report(
        kind="complaint",
        recipient=recipient,
        code=feedback_type,
        diagnostic=_text(fields, "User-Agent"),
        suppress=True,
        original_id=_notification_of(original),
    )


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    # Kept as text (some reporters encode the part): read it block by block ourselves.
    text = payload if isinstance(payload, str) else ""
    chunks = re.split(r"\r?\n\s*\r?\n", text.strip())
    return [HeaderParser().parsestr(chunk) for chunk in chunks if chunk.strip()]


def _original_headers(parts: Sequence[Message]) -> Message | None:
    """The headers of the message the report is about (RFC 3464 and 5965 third part)."""
    for part in parts:
        kind = part.get_content_type()
        if kind in _ORIGINAL_TYPES:
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind in _HEADERS_TYPES:
            content = part.get_payload(decode=True)
            if isinstance(content, bytes):
                return HeaderParser().parsestr(content.decode("utf-8", "replace"))
    return None


def _notification_of(original: Message | None) -> str | None:
    if original is None:
        return None
    found = as_notification_id(_text(original, "X-Tidings-Notification-ID"))
    if found is None:
        # Message-ID is <notification_id@domain> (compose.message_id).
        local = _text(original, "Message-ID").strip().strip("<>").partition("@")[0]
        found = as_notification_id(local)
    return found


def _text(fields: Message, name: str) -> str:
    value = fields.get(name)
    return " ".join(str(value).split()) if value is not None else ""


def _after_type(value: str) -> str:
    """``smtp; 550 5.1.1 user unknown`` without its type, at most _MAX_TEXT characters."""
    kind, semicolon, rest = value.partition(";")
    text = rest if semicolon and " " not in kind.strip() else value
    return text.strip()[:_MAX_TEXT]


def _address(value: str) -> str | None:
    """The address in ``rfc822; grace@example.com`` or ``<grace@example.com>``."""
    kind, semicolon, rest = value.partition(";")
    if semicolon and "@" not in kind:
        value = rest
    addresses = [addr for _, addr in getaddresses([value]) if "@" in addr]
    return addresses[0] if addresses else None
