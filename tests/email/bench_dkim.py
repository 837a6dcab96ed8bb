"""CPU per DKIM signature, RSA-2048 and Ed25519: dkimpy's ``dkim.sign`` (before: RSA in pure
Python, Ed25519 through PyNaCl) and Tidings' DkimSigner (after: ``cryptography``). Not a test;
run it:

    .venv/bin/python -m tests.email.bench_dkim

Each figure is the best of 5 runs, in µs of this process's CPU time per signature (header
build, canonicalisation and the signature; the message is composed once, outside the
timing). CPU time rather than the clock, so that other work on the machine counts less.
"""

from __future__ import annotations

import argparse
import base64
import time
import timeit
from collections.abc import Callable

import dkim
from cryptography.hazmat.primitives import serialization

from tests.dkim_keys import KEYS
from tests.email.bench_compose import CASES, arguments, notification
from tidings.email_worker.compose import compose
from tidings.email_worker.dkim_signer import SIGNED_HEADERS, DkimSigner

SELECTOR, DOMAIN = "s2026", "tidings.localhost"


def dkimpy_key(key_type: str) -> bytes:
    """The key as ``dkim.sign`` takes it: the PEM for RSA, the base64 raw seed for Ed25519."""
    pem = KEYS[key_type].pem.encode()
    if key_type == "rsa":
        return pem
    key = serialization.load_pem_private_key(pem, password=None)
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(seed)


def before(key_type: str) -> Callable[[bytes], bytes]:
    key = dkimpy_key(key_type)
    algorithm = f"{key_type}-sha256".encode()

    def sign(raw: bytes) -> bytes:
        return bytes(
            dkim.sign(
                raw,
                SELECTOR.encode(),
                DOMAIN.encode(),
                key,
                signature_algorithm=algorithm,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=list(SIGNED_HEADERS),
            )
        )

    return sign


def after(key_type: str) -> Callable[[bytes], bytes]:
    return DkimSigner(KEYS[key_type].pem, SELECTOR, DOMAIN)._signature


def per_signature(sign: Callable[[bytes], bytes], raw: bytes, number: int) -> float:
    runs = timeit.repeat(lambda: sign(raw), timer=time.process_time, number=number, repeat=5)
    return min(runs) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200, help="signatures per run (after)")
    args = parser.parse_args()
    for case, (name, rendered) in CASES.items():
        raw = compose(notification(name), rendered, **arguments()).raw
        for key_type in ("rsa", "ed25519"):
            label = "RSA-2048" if key_type == "rsa" else "Ed25519"
            slow = per_signature(before(key_type), raw, max(args.number // 20, 5))
            fast = per_signature(after(key_type), raw, args.number)
            print(
                f"{case:16} {len(raw):6} B  {label:8}  dkimpy {slow:8.0f} µs  "
                f"DkimSigner {fast:6.0f} µs  ({slow / fast:4.1f}x)"
            )


if __name__ == "__main__":
    main()
