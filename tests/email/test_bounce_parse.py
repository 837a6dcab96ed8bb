"""The report parser on messages shaped like those real mail systems send."""

from __future__ import annotations

import pytest

from tidings.email_worker.bounce_parse import parse_report, read_message
from tidings.email_worker.bounces import BounceHandler, status_event
from tidings.email_worker.compose import verp_address, verp_notification_id

NID = "6cec3c9e-5521-49e3-9c2d-20868373ec98"

# Postfix, user unknown; the original's headers only (text/rfc822-headers).
POSTFIX = f"""\
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces+{NID}@tidings.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="AB12.1700000000/mx.example.net"

--AB12.1700000000/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--AB12.1700000000/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: AB12
Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000 (UTC)

Final-Recipient: rfc822; Grace@Example.org
Original-Recipient: rfc822;Grace@Example.org
Action: failed
Status: 5.1.1
Remote-MTA: dns; mailbox.example.org
Diagnostic-Code: smtp; 550 5.1.1 <Grace@Example.org>: Recipient address rejected:
    User unknown in virtual mailbox table

--AB12.1700000000/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: Tidings <no-reply@tidings.example>
To: Grace <Grace@Example.org>
Message-ID: <{NID}@tidings.example>
X-Tidings-Notification-ID: {NID}

--AB12.1700000000/mx.example.net--
"""


def _dsn(action: str, status: str, diagnostic: str, *, original: str = "") -> bytes:
    """An Exchange/Gmail-style DSN with the whole original attached (message/rfc822)."""
    original = original or (
        f"From: no-reply@tidings.example\nTo: ada@example.com\n"
        f"Message-ID: <{NID}@tidings.example>\nSubject: Hi\n\nHello\n"
    )
    return f"""\
From: postmaster@outlook.example
To: bounces@tidings.example
Subject: Delivery has failed to these recipients or groups
MIME-Version: 1.0
Content-Type: multipart/report; report-type="delivery-status"; boundary="b1"

--b1
Content-Type: text/plain; charset="utf-8"

Your message to ada@example.com couldn't be delivered.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns;BN8PR.outlook.example
Received-From-MTA: dns;tidings.example
Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000

Final-Recipient: rfc822;ada@example.com
Action: {action}
Status: {status}
Diagnostic-Code: {diagnostic}
X-Display-Name: Ada

--b1
Content-Type: message/rfc822

{original}
--b1--
""".encode()


# An ARF report from a feedback loop: recipient redacted, the original attached.
ARF = f"""\
From: feedback@fbl.isp.example
To: bounces@tidings.example
Subject: Abuse report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="part"

--part
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for an email message received from IP 192.0.2.1.

--part
Content-Type: message/feedback-report

Feedback-Type: {{kind}}
User-Agent: ISP-FBL/2.1
Version: 1
Original-Mail-From: <bounces+{NID}@tidings.example>
Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000
Source-IP: 192.0.2.1
Reported-Domain: tidings.example

--part
Content-Type: message/rfc822
Content-Disposition: inline

From: no-reply@tidings.example
To: redacted@isp.example
Message-ID: <whatever@tidings.example>
X-Tidings-Notification-ID: {NID}
Subject: Hi

Hello
--part--
"""


def test_postfix_user_unknown_is_a_hard_bounce() -> None:
    found = parse_report(read_message(POSTFIX.encode()))
    assert found is not None
    assert (found.kind, found.code, found.suppress) == ("bounce", "5.1.1", True)
    assert found.recipient == "Grace@Example.org"
    assert found.diagnostic.startswith("550 5.1.1 <Grace@Example.org>: Recipient address")
    assert found.diagnostic.endswith("User unknown in virtual mailbox table")
    assert found.original_id == NID
    event = status_event(found, NID)
    assert event.status == "failed" and event.feedback == "bounce"
    assert event.error is not None and event.error.startswith("bounced: 5.1.1 550 5.1.1")
    assert event.suppress == "Grace@Example.org"


def test_attribution_by_message_id_when_the_header_is_gone() -> None:
    found = parse_report(read_message(_dsn("failed", "5.1.10", "smtp;550 5.1.10 not found")))
    assert found is not None and found.original_id == NID and found.code == "5.1.10"
    assert found.diagnostic == "550 5.1.10 not found"


@pytest.mark.parametrize(
    ("action", "status", "kind", "suppress"),
    [
        # Blocked by policy (our IP, our domain): fails, but the address is fine.
        ("failed", "5.7.1 (delivery not authorized)", "bounce", False),
        # Message too big: about the message, not the address.
        ("failed", "5.3.4", "bounce", False),
        # The relay gave up after retrying for days: never arrived, the address may be fine.
        ("failed", "4.4.7", "bounce", False),
        ("failed", "", "bounce", True),  # no Status at all: 5.0.0
        ("delayed", "4.2.2", "soft_bounce", False),
        ("Delayed", "", "soft_bounce", False),
    ],
)
def test_classification(action: str, status: str, kind: str, suppress: bool) -> None:
    found = parse_report(read_message(_dsn(action, status, "smtp; 5xx words")))
    assert found is not None
    assert (found.kind, found.suppress) == (kind, suppress)


def test_soft_bounce_is_history_only() -> None:
    found = parse_report(read_message(_dsn("delayed", "4.2.2", "smtp; 452 4.2.2 over quota")))
    assert found is not None
    event = status_event(found, NID)
    assert event.status == "pending" and event.error is None and event.suppress is None
    assert event.detail is not None and "4.2.2 452 4.2.2 over quota" in event.detail


@pytest.mark.parametrize("action", ["delivered", "relayed", "expanded"])
def test_success_dsns_are_nothing_to_act_on(action: str) -> None:
    assert parse_report(read_message(_dsn(action, "2.0.0", "smtp; 250 ok"))) is None


def test_arf_abuse_is_a_complaint() -> None:
    found = parse_report(read_message(ARF.replace("{kind}", "abuse").encode()))
    assert found is not None
    assert (found.kind, found.code, found.suppress) == ("complaint", "abuse", True)
    assert found.recipient == "redacted@isp.example" and found.original_id == NID
    event = status_event(found, NID)
    assert event.status == "delivered" and event.feedback == "complaint"


@pytest.mark.parametrize("kind", ["not-spam", "auth-failure", "other"])
def test_other_feedback_types_are_not_complaints(kind: str) -> None:
    assert parse_report(read_message(ARF.replace("{kind}", kind).encode())) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@b.example\r\nSubject: out of office\r\n\r\nI am away.\r\n",
        b"Content-Type: multipart/report; report-type=disposition-notification; boundary=x\r\n"
        b"\r\n--x\r\nContent-Type: text/plain\r\n\r\nread\r\n--x--\r\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n",
        b"\x00\xff garbage",
    ],
    ids=["plain", "read-receipt", "empty-report", "garbage"],
)
def test_neither_is_none(raw: bytes) -> None:
    assert parse_report(read_message(raw)) is None


async def _no_publish(event: object) -> None:
    raise AssertionError("nothing to publish")


def test_the_bounce_address_wins_over_the_original_headers() -> None:
    other = "0b4cc5a6-7d0b-4e43-9f4a-55d0f3f7e9b1"
    handler = BounceHandler("bounces", _no_publish)
    event = handler.event_for(POSTFIX.encode(), [f"Bounces+{other}@tidings.example"])
    assert event is not None and event.notification_id == other
    fallback = handler.event_for(POSTFIX.encode(), ["bounces@tidings.example"])
    assert fallback is not None and fallback.notification_id == NID
    unnamed = _dsn("failed", "5.1.1", "x", original="From: a@b.example\n\nbody\n")
    assert handler.event_for(unnamed, ["bounces@tidings.example"]) is None


def test_verp_round_trip() -> None:
    address = verp_address("bounces", NID, "tidings.example")
    assert address == f"bounces+{NID}@tidings.example"
    assert verp_notification_id(f"<{address}>", "bounces") == NID
    assert verp_notification_id(address.upper(), "BOUNCES") == NID
    assert verp_notification_id(f"other+{NID}@tidings.example", "bounces") is None
    assert verp_notification_id("bounces+not-a-uuid@tidings.example", "bounces") is None
    assert verp_notification_id("bounces@tidings.example", "bounces") is None
