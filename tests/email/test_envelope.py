"""The envelope sender reaches the SMTP server as MAIL FROM; the bytes compose built are the
bytes that arrive, over SMTP and over Mailgun's API."""

from __future__ import annotations

from email.headerregistry import Address

from tests.mailgun_peer import MailgunPeer
from tests.smtp_peer import SmtpPeer
from tidings.core.messages import NotificationMessage, Recipient
from tidings.email_worker.compose import OutgoingEmail, compose
from tidings.email_worker.senders.mailgun import MailgunSender
from tidings.email_worker.senders.memory import MemorySender
from tidings.email_worker.senders.smtp import SmtpSender
from tidings.email_worker.settings import EmailSettings


def _email(name: str = "Grace Hopper") -> OutgoingEmail:
    n = NotificationMessage(
        notification_id="3f1c0a4e-9a53-4c55-b7a1-7f5b7b3f8a11",
        request_id="req-envelope",
        notification_type="email",
        template_code="welcome",
        language="en",
        variables={},
        recipient=Recipient(user_id="u1", name=name, email="grace@example.org"),
    )
    rendered = {
        "subject": "hi",
        "text_body": "hello\n.\n..leading dots survive SMTP's dot-stuffing\n",
        "body": "<p>hello, Grâce</p>",
    }
    sender = Address(display_name="Tidings", username="no-reply", domain="tidings.example")
    return compose(n, rendered, sender=sender, correlation_id="c1")


async def test_smtp_sender_uses_the_envelope_sender() -> None:
    peer = await SmtpPeer().start()
    sender = SmtpSender(peer.url, pool_size=1, timeout_s=5)
    email = _email()
    try:
        await sender.send(email, envelope_from="bounces+abc@tidings.example")
        await sender.send(email)
    finally:
        await sender.close()
        await peer.stop()
    verp, plain = peer.received
    assert verp.mail_from == "bounces+abc@tidings.example"
    assert verp.rcpt_tos == ["grace@example.org"]
    assert plain.mail_from == "no-reply@tidings.example", "without one: the From address"
    assert verp.raw == plain.raw == email.raw, "sent as built, byte for byte"
    assert verp.message["Message-ID"] == email.message_id
    assert verp.message["To"] == "Grace Hopper <grace@example.org>"


async def test_mailgun_sender_posts_the_raw_message() -> None:
    peer = await MailgunPeer("key-test", "mg.tidings.test").start()
    sender = MailgunSender("key-test", "mg.tidings.test", peer.url, timeout_s=5)
    email = _email("Grâce Hopper")
    try:
        reply = await sender.send(email, envelope_from="bounces+abc@tidings.example")
    finally:
        await sender.close()
        await peer.stop()
    assert reply.startswith("Mailgun 200 <"), reply
    assert not peer.problems
    ((to, message),) = peer.received
    assert to == ["Grâce Hopper <grace@example.org>"], "the To mailbox, as before"
    assert message["Message-ID"] == email.message_id
    assert message["To"] == "Grâce Hopper <grace@example.org>"


async def test_memory_sender_keeps_it() -> None:
    sender = MemorySender()
    email = _email()
    await sender.send(email, envelope_from="bounces+x@d.example")
    assert sender.envelope_from == ["bounces+x@d.example"]
    assert sender.sent == [email]
    (message,) = sender.messages()
    assert message["X-Request-ID"] == "req-envelope"


def test_settings_build_the_verp_address() -> None:
    settings = EmailSettings(email_from="News <news@mail.example.com>", bounce_local_part="rp")
    assert settings.envelope_from("n1") == "rp+n1@mail.example.com"
    assert EmailSettings().bounce_port is None, "no receiver unless asked for"
