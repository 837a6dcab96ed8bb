"""The envelope sender reaches the SMTP server as MAIL FROM."""

from __future__ import annotations

from email.message import EmailMessage

from tests.smtp_peer import SmtpPeer
from tidings.email_worker.senders.memory import MemorySender
from tidings.email_worker.senders.smtp import SmtpSender
from tidings.email_worker.settings import EmailSettings


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Tidings <no-reply@tidings.example>"
    msg["To"] = "grace@example.org"
    msg["Subject"] = "hi"
    msg.set_content("hello")
    return msg


async def test_smtp_sender_uses_the_envelope_sender() -> None:
    peer = await SmtpPeer().start()
    sender = SmtpSender(peer.url, pool_size=1, timeout_s=5)
    try:
        await sender.send(_message(), envelope_from="bounces+abc@tidings.example")
        await sender.send(_message())
    finally:
        await sender.close()
        await peer.stop()
    verp, plain = peer.received
    assert verp.mail_from == "bounces+abc@tidings.example"
    assert verp.rcpt_tos == ["grace@example.org"]
    assert plain.mail_from == "no-reply@tidings.example", "without one: the From address"


async def test_memory_sender_keeps_it() -> None:
    sender = MemorySender()
    await sender.send(_message(), envelope_from="bounces+x@d.example")
    assert sender.envelope_from == ["bounces+x@d.example"]


def test_settings_build_the_verp_address() -> None:
    settings = EmailSettings(email_from="News <news@mail.example.com>", bounce_local_part="rp")
    assert settings.envelope_from("n1") == "rp+n1@mail.example.com"
    assert EmailSettings().bounce_port is None, "no receiver unless asked for"
