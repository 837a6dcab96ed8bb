"""compose() writes the email's bytes itself: read back with the email package, every header
and both bodies are what was asked for, whatever the names, subjects and bodies hold; DKIM
signs those bytes and the signature verifies."""

from __future__ import annotations

import email
import email.policy
import random
import time
import uuid
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any

import dkim
import pytest

from tests.credentials import SECRET_KEY
from tests.dkim_keys import PEM, dns_answering
from tidings.core.errors import PermanentError
from tidings.core.lookups import TemplateDirectory
from tidings.core.messages import NotificationMessage, Recipient
from tidings.email_worker import compose as compose_module
from tidings.email_worker.compose import OutgoingEmail, compose, message_id
from tidings.email_worker.dkim_signer import DkimSigner
from tidings.email_worker.handlers import EmailDelivery
from tidings.email_worker.senders.memory import MemorySender
from tidings.email_worker.settings import EmailSettings

SENDER = Address(display_name="Tidings", username="no-reply", domain="tidings.example")
NID = "3f1c0a4e-9a53-4c55-b7a1-7f5b7b3f8a11"
UNSUBSCRIBE = "https://tidings.example/unsubscribe/eyJ1IjoiMSJ9.c2lnbmF0dXJl/"
MAILTO = "bounces+0123456789abcdef@tidings.example"
HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "X-Request-ID",
    "X-Correlation-ID",
    "X-Tidings-Notification-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
]


def notification(
    *, name: str = "Grace Hopper", address: str = "grace@example.org", request_id: str = "req-1"
) -> NotificationMessage:
    return NotificationMessage(
        notification_id=NID,
        request_id=request_id,
        notification_type="email",
        template_code="welcome",
        language="en",
        variables={},
        recipient=Recipient(user_id="u1", name=name, email=address),
    )


def rendered(
    subject: str = "Welcome, Grace!",
    text: str = "Hello Grace, start here: https://example.com/start?x=1",
    html: str = '<h1>Hello Grace</h1><p><a href="https://example.com/start?x=1">start</a></p>',
) -> dict[str, Any]:
    return {"subject": subject, "text_body": text, "body": html}


def build(
    n: NotificationMessage | None = None,
    r: dict[str, Any] | None = None,
    *,
    sender: Address = SENDER,
    correlation_id: str = "corr-1",
    unsubscribe: bool = True,
) -> OutgoingEmail:
    return compose(
        n or notification(),
        r or rendered(),
        sender=sender,
        correlation_id=correlation_id,
        unsubscribe_url=UNSUBSCRIBE if unsubscribe else None,
        unsubscribe_mailto=MAILTO if unsubscribe else None,
    )


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def lines(raw: bytes) -> list[bytes]:
    assert raw.endswith(b"\r\n")
    return raw[:-2].split(b"\r\n")


def well_formed(raw: bytes) -> EmailMessage:
    """``raw`` as RFC 5322 and MIME want it, parsed: 7-bit, CRLF only, short lines, no
    defects; a multipart/alternative of a text/plain and a text/html part, both UTF-8."""
    assert raw.isascii(), "7-bit clean: no SMTPUTF8 or 8BITMIME needed"
    assert b"\n" not in raw.replace(b"\r\n", b""), "no bare LF"
    assert b"\r" not in raw.replace(b"\r\n", b""), "no bare CR"
    assert max(map(len, lines(raw))) <= 998
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    message = parse(raw)
    assert message.defects == []
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    for part in parts:
        assert part.defects == []
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] in ("7bit", "quoted-printable", "base64")
    return message


def bodies(message: EmailMessage) -> tuple[str, str]:
    text, html = (p.get_content().replace("\r\n", "\n") for p in message.iter_parts())
    return text, html


def test_every_header_and_both_bodies_round_trip() -> None:
    out = build()
    message = well_formed(out.raw)
    assert [name for name, _ in message.items()] == HEADERS, "the same headers, same order"
    assert message["From"] == "Tidings <no-reply@tidings.example>"
    assert message["To"] == "Grace Hopper <grace@example.org>"
    assert message["Subject"] == "Welcome, Grace!"
    assert abs(parsedate_to_datetime(message["Date"]).timestamp() - time.time()) < 5
    assert message["Message-ID"] == f"<{NID}@tidings.example>"
    assert message["X-Request-ID"] == "req-1"
    assert message["X-Correlation-ID"] == "corr-1"
    assert message["X-Tidings-Notification-ID"] == NID
    assert message["List-Unsubscribe"] == (
        f"<{UNSUBSCRIBE}>, <mailto:{MAILTO}?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["MIME-Version"] == "1.0"
    assert bodies(message) == (
        "Hello Grace, start here: https://example.com/start?x=1\n",
        '<h1>Hello Grace</h1><p><a href="https://example.com/start?x=1">start</a></p>\n',
    )
    assert [p["Content-Transfer-Encoding"] for p in message.iter_parts()] == ["7bit", "7bit"]
    # The envelope travels with the bytes.
    assert out.sender == "no-reply@tidings.example"
    assert out.recipients == ("grace@example.org",)
    assert out.names == ("Grace Hopper",)
    assert out.to == ["Grace Hopper <grace@example.org>"]
    assert out.message_id == message["Message-ID"] == message_id(NID, "tidings.example")


def test_the_message_id_is_the_same_on_every_attempt() -> None:
    first, again = build(), build()
    assert first.message_id == again.message_id == f"<{NID}@tidings.example>"
    assert parse(first.raw)["Message-ID"] == parse(again.raw)["Message-ID"]
    assert first.raw != again.raw, "a new boundary each time; the Message-ID stays"


def test_without_an_unsubscribe_url_there_are_no_list_headers() -> None:
    message = well_formed(build(unsubscribe=False).raw)
    assert "List-Unsubscribe" not in message and "List-Unsubscribe-Post" not in message
    url_only = compose(
        notification(),
        rendered(),
        sender=SENDER,
        correlation_id="c",
        unsubscribe_url=UNSUBSCRIBE,
    )
    assert parse(url_only.raw)["List-Unsubscribe"] == f"<{UNSUBSCRIBE}>"


def test_non_ascii_names_and_subject() -> None:
    sender = Address(display_name="Tidings Café", username="no-reply", domain="tidings.example")
    subject = "Bienvenue, Grâce — votre compte est prêt ✓"
    out = build(notification(name="Grâce Hôpper"), rendered(subject=subject), sender=sender)
    message = well_formed(out.raw)
    assert message["From"] == "Tidings Café <no-reply@tidings.example>"
    assert message["From"].addresses[0].display_name == "Tidings Café"
    assert message["To"] == "Grâce Hôpper <grace@example.org>"
    assert message["To"].addresses[0].addr_spec == "grace@example.org"
    assert message["Subject"] == subject
    assert b"=?utf-8?" in out.raw, "RFC 2047 encoded words"
    assert out.to == ["Grâce Hôpper <grace@example.org>"]


@pytest.mark.parametrize(
    "name",
    [
        'Hopper, Grace "Amazing"',  # quoted, the quotes escaped
        "Dr. G. Hopper (Navy)",
        "=?utf-8?q?Mallory?=",  # ASCII that looks like an encoded word stays literal
        "Grâce " * 33,  # 200 characters: one encoded word would pass 998 octets
        "名前" * 100,
        "Grace\x07Bell",  # a control character
    ],
)
def test_awkward_display_names_round_trip(name: str) -> None:
    expected = " ".join(name.split())
    out = build(notification(name=name))
    message = well_formed(out.raw)
    (to,) = message["To"].addresses
    assert to.addr_spec == "grace@example.org"
    if to.display_name != expected:
        # A long name is several encoded words. RFC 2047 §6.2: the white space between
        # adjacent encoded words is not displayed; the email package's address parser keeps
        # it (so did the EmailMessage this replaced). decode_header follows the RFC.
        assert to.display_name.replace(" ", "") == expected.replace(" ", "")
        assert display_name(out.raw, "To") == expected


def display_name(raw: bytes, field: str) -> str:
    """The display name of the one mailbox in ``field``, decoded as RFC 2047 says."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii").replace("\r\n ", " ")
    value = next(line for line in head.split("\r\n") if line.startswith(f"{field}: "))
    phrase = value.partition(": ")[2].rpartition(" <")[0]
    return str(make_header(decode_header(phrase)))


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "word " * 60,  # long: folded at spaces
        "x" * 1200,  # one word longer than a line may be
        "=?utf-8?q?not_an_encoded_word?=",
        "Grâce " * 200,
        'Ünïcödé, with; punctuation: (and) <angle> "quotes" and a tab\there',
        "emoji 🎉 and CJK 漢字",
    ],
)
def test_awkward_subjects_round_trip(subject: str) -> None:
    expected = " ".join(subject.split())
    out = build(r=rendered(subject=expected))
    message = well_formed(out.raw)
    assert message["Subject"] == expected
    head = out.raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))


def test_a_long_ascii_subject_is_folded_at_spaces() -> None:
    subject = " ".join(f"word{i}" for i in range(40))
    raw = build(r=rendered(subject=subject)).raw
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    field = "Subject:" + head.partition("Subject:")[2].partition("\r\nDate:")[0]
    assert len(field.split("\r\n")) == 4 and all(len(x) <= 78 for x in field.split("\r\n"))
    assert "=?" not in field, "not encoded"
    assert parse(raw)["Subject"] == subject


def test_a_body_line_longer_than_998_octets() -> None:
    long_line = "a" * 2000
    html = f"<p>{'x' * 1500}</p>\n<p>end</p>"
    message = well_formed(build(r=rendered(text=f"start\n{long_line}\nend", html=html)).raw)
    assert [p["Content-Transfer-Encoding"] for p in message.iter_parts()] == [
        "quoted-printable",
        "quoted-printable",
    ]
    assert bodies(message) == (f"start\n{long_line}\nend\n", f"{html}\n")


def test_a_998_octet_line_is_still_7bit() -> None:
    text = "b" * 998
    message = well_formed(build(r=rendered(text=text)).raw)
    plain = next(message.iter_parts())
    assert plain["Content-Transfer-Encoding"] == "7bit"
    assert bodies(message)[0] == text + "\n"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Grâce, ça va? Voilà: a mostly ASCII text, with a few accents.\n", "quoted-printable"),
        ("Привет, Грейс! " * 40, "base64"),  # mostly non-ASCII: base64 is shorter
        ("漢字かな交じり文 " * 50, "base64"),
        ("nul\x00byte", "quoted-printable"),
        ("trailing spaces   \nand tabs\t\n.\nFrom the start\n=3D is no escape\n", "7bit"),
    ],
)
def test_bodies_round_trip_in_their_encoding(text: str, encoding: str) -> None:
    html = f"<p>{text}</p>"
    message = well_formed(build(r=rendered(text=text, html=html)).raw)
    assert [p["Content-Transfer-Encoding"] for p in message.iter_parts()] == [encoding] * 2
    assert bodies(message) == (text + ("" if text.endswith("\n") else "\n"), html + "\n")


def test_line_endings_become_crlf() -> None:
    text = "one\ntwo\r\nthree\rfour"
    out = build(r=rendered(text=text))
    assert b"one\r\ntwo\r\nthree\r\nfour\r\n" in out.raw
    assert bodies(well_formed(out.raw))[0] == "one\ntwo\nthree\nfour\n"


def test_dashes_and_boundary_lookalikes_in_bodies() -> None:
    text = "--\n-- \n--=_\n--=_0123456789abcdef01234567\n--=_0123456789abcdef01234567--\n----"
    html = "<pre>\n--\n--=_deadbeefdeadbeefdeadbeef--\n</pre>"
    message = well_formed(build(r=rendered(text=text, html=html)).raw)
    assert bodies(message) == (text + "\n", html + "\n")


def test_the_boundary_is_never_in_a_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """A body that holds the first boundary drawn makes compose draw another."""
    drawn = iter(["aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb"])
    monkeypatch.setattr(compose_module.secrets, "token_hex", lambda n: next(drawn))
    text = "quoting a boundary:\n--=_aaaaaaaaaaaaaaaaaaaaaaaa\nstill the text part\n"
    out = build(r=rendered(text=text))
    message = well_formed(out.raw)
    assert message.get_boundary() == "=_bbbbbbbbbbbbbbbbbbbbbbbb"
    assert bodies(message)[0] == text


def test_header_injection_is_neutralised() -> None:
    n = notification(
        name="Grace\r\nBcc: victim@evil.example",
        request_id="req\r\nBcc: victim@evil.example",
    )
    r = rendered(subject="Hi\r\nBcc: victim@evil.example\n\nInjected body")
    out = compose(n, r, sender=SENDER, correlation_id="c\nX-Evil: 1", unsubscribe_url=UNSUBSCRIBE)
    message = well_formed(out.raw)
    assert "Bcc" not in message and "X-Evil" not in message
    assert [name for name, _ in message.items()] == HEADERS
    assert message["To"].addresses[0].display_name == "Grace Bcc: victim@evil.example"
    assert message["To"].addresses[0].addr_spec == "grace@example.org"
    assert message["Subject"] == "Hi Bcc: victim@evil.example Injected body"
    assert message["X-Request-ID"] == "req Bcc: victim@evil.example"
    assert message["X-Correlation-ID"] == "c X-Evil: 1"
    assert out.recipients == ("grace@example.org",)
    for line in lines(out.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"):
        assert not line.lower().startswith((b"bcc:", b"x-evil:"))


@pytest.mark.parametrize(
    "address",
    [
        "",
        "grace",
        "grace@",
        "@example.org",
        "a@b@example.org",
        "gr ace@example.org",
        "grace@example.org\r\nBcc: x@evil.example",
        "grace@example.org\nRCPT TO:<x@evil.example>",
        "<grace@example.org>",
        "Grace <grace@example.org>",
        "a,b@example.org",
        "grace\t@example.org",
        "grâce@example.org",
        "grace@exämple.org",
        ".grace@example.org",
        "gr..ace@example.org",
    ],
)
def test_addresses_that_cannot_be_recipients_are_refused(address: str) -> None:
    with pytest.raises(ValueError):
        build(notification(address=address))


@pytest.mark.parametrize(
    "address", ["grace@example.org", "g.hopper+news@mail.example.co.uk", "o'hara@example.org"]
)
def test_ordinary_addresses_are_taken(address: str) -> None:
    out = build(notification(address=address))
    assert out.recipients == (address,)
    assert parse(out.raw)["To"].addresses[0].addr_spec == address


def test_random_content_round_trips() -> None:
    """Random mixes of ASCII, punctuation, non-ASCII, long runs and line breaks."""
    rng = random.Random(20260101)
    alphabet = "abc XYZ 019 -=_.,;:<>()\"'?!@\\/\t" + "éüßçøå€—\u2013“”" + "Жд漢字🎉" + "\n\r"
    for _ in range(150):

        def text(size: int) -> str:
            return "".join(
                rng.choice(alphabet) if rng.random() < 0.97 else "q" * rng.randint(50, 1100)
                for _ in range(rng.randint(0, size))
            )

        name, subject, request_id = text(60), text(120), text(40) or "r"
        body, html = text(600), text(600)
        out = build(
            notification(name=name, request_id=request_id),
            rendered(subject=subject, text=body, html=html),
        )
        message = well_formed(out.raw)
        assert [n for n, _ in message.items()] == HEADERS
        (to,) = message["To"].addresses
        assert to.addr_spec == "grace@example.org"
        expected = " ".join(name.split())
        if to.display_name != expected:  # see test_awkward_display_names_round_trip
            assert to.display_name.replace(" ", "") == expected.replace(" ", "")
            assert display_name(out.raw, "To") == expected
        assert message["Subject"] == " ".join(subject.split())
        assert message["X-Request-ID"] == " ".join(request_id.split())

        def normal(value: str) -> str:
            value = value.replace("\r\n", "\n").replace("\r", "\n")
            return value if value.endswith("\n") else value + "\n"

        assert bodies(message) == (normal(body), normal(html))


dns = dns_answering(b"s2026._domainkey.tidings.example.")


async def test_dkim_signs_the_raw_bytes_and_verifies() -> None:
    out = build(
        notification(name="Grâce Hôpper"),
        rendered(subject="Bienvenue, Grâce", text="Bonjour, ça va? " * 200),
    )
    signed = await DkimSigner(PEM, "s2026", "tidings.example").sign(out.raw)
    assert signed.startswith(b"DKIM-Signature: ") and signed.endswith(out.raw)
    assert dkim.verify(signed, dnsfunc=dns)
    message = well_formed(signed)
    assert [name for name, _ in message.items()] == ["DKIM-Signature", *HEADERS]
    tags = dict(t.strip().partition("=")[::2] for t in str(message["DKIM-Signature"]).split(";"))
    signed_headers = tags["h"].replace(" ", "").lower().split(":")
    for header in ("from", "to", "subject", "message-id", "list-unsubscribe"):
        assert header in signed_headers
    assert "list-unsubscribe-post" in signed_headers
    assert not dkim.verify(signed.replace(b"Bienvenue", b"Bienvenu"), dnsfunc=dns)
    assert not dkim.verify(signed.replace(b"Bonjour", b"Bonsoir", 1), dnsfunc=dns)


class Templates(TemplateDirectory):
    """The templates service's answer, without the service: ``render`` is the real one."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.template = template

    async def get(self, code: str, channel: str, language: str) -> dict[str, Any]:
        return self.template


def delivery(sender: MemorySender, signer: DkimSigner | None = None) -> EmailDelivery:
    settings = EmailSettings(
        secret_key=SECRET_KEY,
        email_from="Tidings <no-reply@tidings.example>",
        public_url="https://tidings.example",
    )
    template = {"subject": "Welcome, {{ name }}!", "body": "<p>Hi {{ name }}</p>", "text_body": ""}
    return EmailDelivery(settings, Templates(template), sender, signer)


def handler_notification(address: str) -> NotificationMessage:
    return NotificationMessage(
        notification_id=str(uuid.uuid4()),
        request_id="req-h",
        notification_type="email",
        template_code="welcome",
        language="en",
        variables={"name": "Grâce", "link": "https://example.com/"},
        recipient=Recipient(user_id="u1", name="Grâce Hopper", email=address),
    )


async def test_the_handler_sends_signed_bytes() -> None:
    sender = MemorySender()
    handle = delivery(sender, DkimSigner(PEM, "s2026", "tidings.example"))
    n = handler_notification("grace@example.org")
    assert await handle(n) == "250 kept in memory"
    (sent,) = sender.sent
    assert dkim.verify(sent.raw, dnsfunc=dns)
    (message,) = sender.messages()
    assert message["Subject"] == "Welcome, Grâce!"
    assert message["Message-ID"] == sent.message_id == f"<{n.notification_id}@tidings.example>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert str(message["List-Unsubscribe"]).startswith("<https://tidings.example/unsubscribe/")
    assert sender.envelope_from == [f"bounces+{n.notification_id}@tidings.example"]
    assert sent.recipients == ("grace@example.org",)


@pytest.mark.parametrize("address", ["not an address", "a@b@c", "grace@example.org\r\nBcc: x@y"])
async def test_the_handler_fails_an_unusable_address_permanently(address: str) -> None:
    sender = MemorySender()
    with pytest.raises(PermanentError, match="cannot build the email"):
        await delivery(sender)(handler_notification(address))
    assert sender.sent == []
