"""DKIM signatures (RFC 6376) with dkimpy, when a key is configured.

relaxed/relaxed canonicalisation: the header folding of a later serialisation does not break
the signature. The signed headers include List-Unsubscribe and List-Unsubscribe-Post, as
mailbox providers require for one-click unsubscribe.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import dkim

SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)


class DkimSigner:
    def __init__(self, private_key_pem: str, selector: str, domain: str) -> None:
        self.private_key = private_key_pem.encode()
        self.selector = selector.encode()
        self.domain = domain.encode()

    def _signature(self, raw: bytes) -> bytes:
        return bytes(
            dkim.sign(
                raw,
                self.selector,
                self.domain,
                self.private_key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=list(SIGNED_HEADERS),
            )
        )

    async def sign(self, message: EmailMessage) -> None:
        """Add the DKIM-Signature header (RSA costs about a millisecond: off the loop)."""
        header = await asyncio.to_thread(self._signature, message.as_bytes())
        name, _, value = header.decode().partition(":")
        # The value is folded already; the email package would fold it again.
        message[name] = " ".join(value.split())
