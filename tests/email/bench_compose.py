"""CPU per email of building it: compose() plus what the sender does to get the wire bytes
(no network). Not a test; run it:

    .venv/bin/python -m tests.email.bench_compose            # the code as it is
    .venv/bin/python -m tests.email.bench_compose --before   # compose.py at 22a1d43 too

``--before`` loads compose.py as it was before the raw-bytes change (from git) and measures
its path: an ``EmailMessage`` (policy SMTP), flattened once to DKIM-sign it, then what
``aiosmtplib.send_message`` did (parse the To header, copy and flatten again).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import timeit
import types
from collections.abc import Callable
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtplib.email import extract_recipients, flatten_message

from tests.dkim_keys import PEM
from tidings.core.messages import NotificationMessage, Recipient
from tidings.email_worker.compose import compose
from tidings.email_worker.dkim_signer import DkimSigner

BEFORE = "22a1d43"  # the last commit with the EmailMessage compose
ROOT = Path(__file__).resolve().parents[2]
SENDER = Address(display_name="Tidings", username="no-reply", domain="tidings.localhost")
SIGNER = DkimSigner(PEM, "s2026", "tidings.localhost")
LINK = "https://example.com/start?x=1"
CASES: dict[str, tuple[str, dict[str, str]]] = {
    # What the benchmark (src/tidings/bench/runner.py) sends.
    "bench template": (
        "Grace",
        {
            "subject": "Hello Grace",
            "body": f'<p>Hello Grace: <a href="{LINK}">{LINK}</a></p>',
            "text_body": f"Hello Grace: {LINK}",
        },
    ),
    # A non-ASCII name and subject; 6 KB of HTML on long lines.
    "non-ASCII, 6 KB": (
        "Grâce Hopper",
        {
            "subject": "Bienvenue, Grâce, votre compte est prêt",
            "body": "<html><body>"
            + "<p>Un paragraphe assez long, avec des accents: é à ü ß.</p>" * 100
            + "</body></html>",
            "text_body": "Bonjour Grâce,\n\n" + "Une ligne de texte. " * 200,
        },
    ),
}


def notification(name: str) -> NotificationMessage:
    return NotificationMessage(
        notification_id="3f1c0a4e-9a53-4c55-b7a1-7f5b7b3f8a11",
        request_id="req-5f0b6a7c9d1e4f2a8b3c",
        notification_type="email",
        template_code="welcome",
        language="en",
        variables={},
        recipient=Recipient(user_id="u1", name=name, email="grace@example.org"),
    )


def arguments() -> dict[str, Any]:
    return {
        "sender": SENDER,
        "correlation_id": "9b2f4c1d8e7a4b6c",
        "unsubscribe_url": "https://tidings.localhost/unsubscribe/eyJ1IjoiMSJ9.abcdef/",
        "unsubscribe_mailto": "bounces+0123456789abcdef@tidings.localhost",
    }


def now(n: NotificationMessage, rendered: dict[str, str], dkim: bool) -> bytes:
    email = compose(n, rendered, **arguments())
    raw = SIGNER._signature(email.raw) + email.raw if dkim else email.raw
    list(email.recipients)  # SmtpSender: sendmail(sender, list(recipients), raw)
    return raw


def before(old: types.ModuleType) -> Callable[[NotificationMessage, dict[str, str], bool], bytes]:
    def wire(n: NotificationMessage, rendered: dict[str, str], dkim: bool) -> bytes:
        message: EmailMessage = old.compose(n, rendered, **arguments())
        if dkim:  # the old DkimSigner.sign
            header = SIGNER._signature(message.as_bytes())
            name, _, value = header.decode().partition(":")
            message[name] = " ".join(value.split())
        # aiosmtplib.send_message (with a VERP sender, so no From parsing), 8BITMIME offered
        extract_recipients(message)
        return flatten_message(message, utf8=False, cte_type="8bit")

    return wire


def load_before() -> types.ModuleType:
    source = subprocess.run(
        ["git", "show", f"{BEFORE}:src/tidings/email_worker/compose.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("compose_before")
    exec(compile(source, f"compose.py@{BEFORE}", "exec"), module.__dict__)
    return module


def measure(label: str, wire: Callable[[NotificationMessage, dict[str, str], bool], bytes]) -> None:
    for case, (name, rendered) in CASES.items():
        n = notification(name)
        for dkim in (False, True):
            count = 200 if dkim else 2000
            runs = timeit.repeat(lambda: wire(n, rendered, dkim), number=count, repeat=7)  # noqa: B023
            per = sorted(r / count * 1000 for r in runs)
            print(
                f"{label:7} {case:16} DKIM {'yes' if dkim else 'no ':3}  "
                f"best {per[0]:6.3f} ms  median {statistics.median(per):6.3f} ms per message"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", action="store_true", help=f"also measure compose@{BEFORE}")
    args = parser.parse_args()
    if args.before:
        measure("before", before(load_before()))
    measure("after", now)
    raw = compose(notification("Grace"), CASES["bench template"][1], **arguments()).raw
    signing = timeit.repeat(lambda: SIGNER._signature(raw), number=50, repeat=5)
    print(f"of which DkimSigner (RSA-2048) alone: best {min(signing) / 50 * 1000:.3f} ms")


if __name__ == "__main__":
    main()
