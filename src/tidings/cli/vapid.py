"""``tidings vapid generate``: a VAPID key pair (RFC 8292) for Web Push.

Wiring (``tidings.cli.parser()``): ``vapid.add_commands(sub)``.
"""

from __future__ import annotations

import argparse
import base64
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def generate_vapid_keys() -> tuple[str, str]:
    """(private, public), base64url without padding: the private key's raw 32-byte scalar
    (TIDINGS_VAPID_PRIVATE_KEY) and the public key's uncompressed point, the
    ``applicationServerKey`` browsers subscribe with (TIDINGS_VAPID_PUBLIC_KEY)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_numbers().private_value.to_bytes(32, "big")
    public = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return _b64url(private), _b64url(public)


def _generate(args: argparse.Namespace) -> int:
    private, public = generate_vapid_keys()
    lines = f"TIDINGS_VAPID_PRIVATE_KEY={private}\nTIDINGS_VAPID_PUBLIC_KEY={public}\n"
    if args.out:
        out = Path(args.out)
        if out.exists() and not args.force:
            print(f"tidings: {out} exists; --force to replace it")
            return 1
        # The private key is a secret: the file is readable by its owner only.
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(lines)
        print(f"wrote {out}; public key (for browsers): {public}")
    else:
        print(lines, end="")
    return 0


def add_commands(sub: Any) -> None:
    """``sub``: the ``tidings`` parser's subparsers."""
    vapid = sub.add_parser("vapid", help="Web Push VAPID keys")
    commands = vapid.add_subparsers(dest="vapid_command", required=True)
    generate = commands.add_parser(
        "generate", help="print a new VAPID key pair as TIDINGS_VAPID_* lines"
    )
    generate.add_argument("--out", help="write the lines to this file (mode 600) instead")
    generate.add_argument("--force", action="store_true", help="replace an existing --out file")
    generate.set_defaults(func=_generate)
