"""DKIM signatures (RFC 6376) when a key is configured: RSA-SHA256 or Ed25519-SHA256
(RFC 8463), whichever the PEM key is.

The signature is over the very bytes that are sent (compose builds them; nothing serialises
the message again); relaxed/relaxed canonicalisation all the same, so a relay that refolds a
header does not break it. The signed headers include List-Unsubscribe and
List-Unsubscribe-Post, as mailbox providers require for one-click unsubscribe.

dkimpy builds the header here (its header parser, relaxed header canonicalisation, the tag
list as ``dkim.sign`` writes it, its folding and its ``b=`` stripping), but it cannot sign:
``dkim.sign`` parses the key itself and computes RSA in pure Python (about 9 ms a message),
and its Ed25519 path wants PyNaCl and a raw base64 key rather than a PEM. It has no hook
for another signer, so the hash of the canonical headers is signed here with
``cryptography`` (OpenSSL): about 0.25 ms for RSA-2048, 0.05 ms for Ed25519.

One part is written by hand, the relaxed *body* canonicalisation (:func:`relaxed_body`):
dkimpy's replaces every run of spaces and tabs, single spaces included, one regex match per
word (about 0.4 ms for a 13 KB body, more than the RSA signature). Here it is done with
``bytes.replace`` (tabs to spaces, then double spaces halved until there are none), a few
µs; the result is byte for byte dkimpy's (tests/email/test_dkim_signer.py compares them).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import time

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.canonicalization import Relaxed, correct_empty_body, strip_trailing_lines

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
HEADER_NAME = b"DKIM-Signature"
# Up to this size (about 0.6 ms of CPU with RSA) a message is signed on the event loop.
INLINE_MAX = 64 * 1024
_LINE_END = re.compile(rb"\r?\n")


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 on a CRLF body: trailing whitespace off each line, other runs of
    whitespace to one space, trailing empty lines off (dkimpy's result, see the module)."""
    if body.count(b"\n") != body.count(b"\r\n"):
        body = _LINE_END.sub(b"\r\n", body)  # a bare LF, as dkimpy's parser would take it
    body = body.replace(b"\t", b" ")
    while b"  " in body:  # each pass halves every run of spaces
        body = body.replace(b"  ", b" ")
    body = body.replace(b" \r\n", b"\r\n")  # what is left of trailing whitespace
    return correct_empty_body(strip_trailing_lines(body))


class DkimSigner:
    def __init__(self, private_key_pem: str, selector: str, domain: str) -> None:
        key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
            raise ValueError(f"a DKIM key is RSA or Ed25519, not {type(key).__name__}")
        self.key = key
        self.algorithm = b"rsa-sha256" if isinstance(key, rsa.RSAPrivateKey) else b"ed25519-sha256"
        self.selector = selector.encode()
        self.domain = domain.encode()

    def _sign_digest(self, digest: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        return self.key.sign(digest)  # RFC 8463 §3: Ed25519 over the SHA-256 hash

    def _signature(self, raw: bytes) -> bytes:
        """The DKIM-Signature header for ``raw``, folded and CRLF-ended, as ``dkim.sign``
        would write it."""
        end = raw.find(b"\r\n\r\n")  # parse the header block only: dkimpy splits every line
        if end >= 0:
            headers, body = dkim.rfc822_parse(raw[: end + 4])[0], raw[end + 4 :]
        else:
            headers, body = dkim.rfc822_parse(raw)
        fields = [
            (b"v", b"1"),
            (b"a", self.algorithm),
            (b"c", b"relaxed/relaxed"),
            (b"d", self.domain),
            (b"i", b"@" + self.domain),
            (b"q", b"dns/txt"),
            (b"s", self.selector),
            (b"t", str(int(time.time())).encode()),
            (b"h", b" : ".join(SIGNED_HEADERS)),
            (b"bh", base64.b64encode(hashlib.sha256(relaxed_body(body)).digest())),
            # 60 characters: b= folds onto a line of its own, as dkimpy has it.
            (b"b", b"0" * 60),
        ]
        unsigned = dkim.fold(b"; ".join(b"=".join(f) for f in fields), namelen=len(HEADER_NAME))
        unsigned = dkim.RE_BTAG.sub(b"\\1", unsigned)
        hasher = hashlib.sha256()
        dkim.hash_headers(
            hasher,
            Relaxed,
            # Only the signed ones canonicalised (dkimpy does them all): the same bytes hashed.
            Relaxed.canonicalize_headers(dkim.select_headers(headers, SIGNED_HEADERS)),
            SIGNED_HEADERS,
            (HEADER_NAME, b" " + unsigned),
            dict(fields),
        )
        fields[-1] = (b"b", base64.b64encode(self._sign_digest(hasher.digest())))
        value = b"; ".join(b"=".join(f) for f in fields) + b"\r\n"
        return HEADER_NAME + b": " + dkim.fold(value, namelen=len(HEADER_NAME))

    async def sign(self, raw: bytes) -> bytes:
        """``raw`` with the DKIM-Signature header prepended (folded, CRLF-ended).

        An ordinary message is signed on the event loop: about 0.4 ms of CPU with RSA-2048
        (0.15 ms with Ed25519), where a worker thread's hand-over costs 0.09 ms more CPU per
        message (measured on uvloop: RSA 383 -> 465 µs, Ed25519 136 -> 216 µs) and frees
        only the OpenSSL part (``cryptography`` releases the GIL there; dkimpy's header work
        holds it). A large one goes to a thread: the body's canonicalisation grows with its
        size (about 1.7 ms at 200 KB, 15 ms at 2 MB)."""
        if len(raw) <= INLINE_MAX:
            return self._signature(raw) + raw
        return await asyncio.to_thread(self._signature, raw) + raw
