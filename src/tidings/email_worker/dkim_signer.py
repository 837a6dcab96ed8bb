"""DKIM signatures (RFC 6376) with dkimpy, when a key is configured.

The signature is over the very bytes that are sent (compose builds them; nothing serialises
the message again); relaxed/relaxed canonicalisation all the same, so a relay that refolds a
header does not break it. The signed headers include List-Unsubscribe and
List-Unsubscribe-Post, as mailbox providers require for one-click unsubscribe.
"""

from __future__ import annotations

import asyncio

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

    async def sign(self, raw: bytes) -> bytes:
        """``raw`` with the DKIM-Signature header prepended (dkimpy folds it, CRLF-ended).
        The RSA signature is the costly part: off the event loop."""
        header = await asyncio.to_thread(self._signature, raw)
        return header + raw
