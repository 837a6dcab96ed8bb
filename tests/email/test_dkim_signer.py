"""The DKIM signer: RSA-SHA256 or Ed25519-SHA256 (RFC 8463) as the PEM key is, checked by an
independent verifier (dkimpy's ``dkim.verify``, the public key from a DNS answer); for RSA the
header is byte for byte what ``dkim.sign`` writes, and the relaxed body canonicalisation,
the one part written by hand, gives dkimpy's bytes."""

from __future__ import annotations

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from dkim.canonicalization import Relaxed

from tests.dkim_keys import KEYS, RSA, dns_answering
from tests.email.test_compose import build, notification, rendered
from tidings.email_worker.dkim_signer import (
    INLINE_MAX,
    SIGNED_HEADERS,
    DkimSigner,
    relaxed_body,
)

DOMAIN = "tidings.example"
RECORD = b"s2026._domainkey.tidings.example."


def raw_email(text: str = "Bonjour, ça va?\n" * 50, html: str = "<p>Bonjour</p>") -> bytes:
    return build(
        notification(name="Grâce Hôpper"),
        rendered(subject="Bienvenue, Grâce", text=text, html=html),
    ).raw


def tags(signed: bytes) -> dict[str, str]:
    header = signed.split(b"\r\n\r\n", 1)[0].decode().split("\r\nFrom:", 1)[0]
    value = " ".join(header.removeprefix("DKIM-Signature:").split())
    return {k.strip(): v.strip() for k, _, v in (t.partition("=") for t in value.split(";"))}


@pytest.mark.parametrize("key_type", sorted(KEYS))
async def test_signs_with_the_pems_algorithm_and_verifies(key_type: str) -> None:
    key = KEYS[key_type]
    dns = dns_answering(RECORD, key)
    raw = raw_email()
    signed = await DkimSigner(key.pem, "s2026", DOMAIN).sign(raw)
    assert signed.startswith(b"DKIM-Signature: ") and signed.endswith(raw)
    assert dkim.verify(signed, dnsfunc=dns)
    found = tags(signed)
    assert found["a"] == f"{key_type}-sha256" and found["c"] == "relaxed/relaxed"
    assert found["d"] == DOMAIN and found["s"] == "s2026"
    assert found["h"].replace(" ", "").split(":") == [h.decode() for h in SIGNED_HEADERS]
    assert not dkim.verify(signed.replace(b"Bienvenue", b"Bienvenu"), dnsfunc=dns)
    assert not dkim.verify(signed.replace(b"Bonjour", b"Bonsoir", 1), dnsfunc=dns)


@pytest.mark.parametrize("key_type", sorted(KEYS))
async def test_relaxed_survives_a_relay_that_refolds_and_respaces(key_type: str) -> None:
    """Whitespace the relaxed algorithms ignore: a header refolded, a run of spaces in the
    body squeezed, trailing spaces dropped; still verifies."""
    key = KEYS[key_type]
    raw = raw_email(text="Columns:\tone  two   three \nend\n\n\n", html="<pre>a  \t b</pre>")
    signed = await DkimSigner(key.pem, "s2026", DOMAIN).sign(raw)
    relayed = (
        signed.replace(b"Subject: ", b"Subject:\r\n    ", 1)
        .replace(b"two   three \r\n", b"two three\r\n")
        .replace(b"a  \t b", b"a b")
    )
    assert relayed.count(b"\r\n") == signed.count(b"\r\n") + 1 and b"a b" in relayed
    assert dkim.verify(relayed, dnsfunc=dns_answering(RECORD, key))


@pytest.mark.parametrize("key_type", sorted(KEYS))
async def test_a_message_too_large_for_the_event_loop_is_signed_alike(key_type: str) -> None:
    """Past INLINE_MAX the signature is made in a thread; it verifies all the same."""
    key = KEYS[key_type]
    raw = raw_email(text="Une ligne  de texte,\tavec des espaces. \n" * 4000)
    assert len(raw) > INLINE_MAX
    dns = dns_answering(RECORD, key)
    signed = await DkimSigner(key.pem, "s2026", DOMAIN).sign(raw)
    assert signed.endswith(raw) and dkim.verify(signed, dnsfunc=dns)
    assert not dkim.verify(signed.replace(b"Une ligne", b"Un ligne", 1), dnsfunc=dns)


async def test_an_rsa_signature_is_the_one_dkim_sign_writes() -> None:
    """PKCS#1 v1.5 is deterministic: same key, same second, same bytes as dkimpy's own."""
    raw = raw_email()
    signer = DkimSigner(RSA.pem, "s2026", DOMAIN)
    for _ in range(3):  # again if the clock's second turned between the two
        ours = (await signer.sign(raw))[: -len(raw)]
        theirs = dkim.sign(
            raw,
            b"s2026",
            DOMAIN.encode(),
            RSA.pem.encode(),
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(SIGNED_HEADERS),
        )
        if tags(ours + raw)["t"] == tags(theirs + raw)["t"]:
            break
    assert ours == theirs


BODIES = [
    b"",
    b"\r\n",
    b"\r\n\r\n\r\n",
    b"one line",
    b"one line\r\n",
    b"trailing empty lines\r\n\r\n\r\n",
    b"trailing space \r\nand tab\t\r\nand both \t \r\n",
    b"runs  of   spaces\tand\t\ttabs \t mixed\r\n",
    b" leading space and \t\r\n\t leading tab\r\n",
    b"no CRLF at the end, trailing space ",
    b"bare LF\nhere  and\n\n",
    b"lone CR\r stays \r\r\n",
    b" \r\n \r\n",
    b"\t\r\n",
    b"=20 quoted-printable =\r\nsoft break  \r\n",
]


@pytest.mark.parametrize("body", BODIES)
def test_relaxed_body_is_dkimpys(body: bytes) -> None:
    _, parsed = dkim.rfc822_parse(b"From: a@b.example\r\n\r\n" + body)
    assert relaxed_body(parsed) == Relaxed.canonicalize_body(parsed)
    assert relaxed_body(body) == Relaxed.canonicalize_body(parsed)


def test_a_key_of_another_type_is_refused() -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ValueError, match="RSA or Ed25519"):
        DkimSigner(pem, "s2026", DOMAIN)
