"""The built-in SMTP capture server of ``tidings up``: a real SMTP listener (aiosmtpd) that
keeps every message it receives as a ``.eml`` file under ``<data_dir>/mailbox`` for
``tidings mail`` to show. For development; never for real mail."""

from __future__ import annotations

import asyncio
import email
import email.policy
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class MailboxHandler:
    def __init__(self, mailbox: Path) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = (
            envelope.content
            if isinstance(envelope.content, bytes)
            else str(envelope.content).encode()
        )
        name = f"{asyncio.get_running_loop().time():020.6f}-{uuid.uuid4().hex[:8]}.eml"
        await asyncio.to_thread(self._write, name, content)
        return "250 Message accepted for delivery"

    def _write(self, name: str, content: bytes) -> None:
        self.mailbox.mkdir(parents=True, exist_ok=True)
        tmp = self.mailbox / f".{name}.tmp"
        tmp.write_bytes(content)
        tmp.rename(self.mailbox / name)


async def start_capture(host: str, port: int, mailbox: Path) -> asyncio.Server:
    await asyncio.to_thread(mailbox.mkdir, parents=True, exist_ok=True)
    handler = MailboxHandler(mailbox)
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: SMTP(handler, hostname="tidings-capture"), host, port)


def read_mailbox(mailbox: Path) -> list[dict[str, Any]]:
    """Every captured message, oldest first, as a dict of its main headers and bodies."""
    items = []
    for path in sorted(mailbox.glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        items.append(
            {
                "file": path.name,
                "date": msg["Date"],
                "from": msg["From"],
                "to": msg["To"],
                "subject": msg["Subject"],
                "message_id": msg["Message-ID"],
                "request_id": msg["X-Request-ID"],
                "correlation_id": msg["X-Correlation-ID"],
                "text": text.get_content() if text is not None else None,
                "html": html.get_content() if html is not None else None,
            }
        )
    return items
