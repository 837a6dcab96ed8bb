"""Mailgun's HTTP API as an email transport: POST /v3/<domain>/messages.mime with the very
MIME message the SMTP transport would send (headers, DKIM signature and all), so switching
transport changes nothing the recipient sees.

Classified like SMTP: 401/403 provider-auth; 400 permanent; 429 and 5xx transient (5xx and
connection failures count against the breaker); timeouts transient.
"""

from __future__ import annotations

import httpx

from tidings.core.errors import PermanentError, ProviderAuthError, TransientError
from tidings.email_worker.compose import OutgoingEmail
from tidings.email_worker.senders import EmailSender


class MailgunSender(EmailSender):
    def __init__(self, api_key: str, domain: str, base_url: str, timeout_s: float) -> None:
        self.domain = domain
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=("api", api_key),
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=20),
        )

    async def send(self, email: OutgoingEmail, envelope_from: str | None = None) -> str:
        data = {"to": email.to}  # the To mailboxes, display names and all, as before
        if envelope_from:
            # Mailgun's own bounce handling uses its address; ours travels as a header.
            data["h:X-Tidings-Envelope-From"] = [envelope_from]
        try:
            answer = await self._client.post(
                f"/v3/{self.domain}/messages.mime",
                data=data,
                files={"message": ("message.mime", email.raw, "message/rfc822")},
            )
        except httpx.TimeoutException as exc:
            raise TransientError(f"Mailgun timed out: {exc!r}", connection_level=True) from exc
        except httpx.HTTPError as exc:
            raise TransientError(f"Mailgun unreachable: {exc!r}", connection_level=True) from exc
        reason = f"Mailgun {answer.status_code}"
        if answer.status_code in (401, 403):
            raise ProviderAuthError(f"{reason}: the API key was refused")
        if answer.status_code == 429:
            raise TransientError(f"{reason}: rate limited")
        if answer.status_code >= 500:
            raise TransientError(f"{reason}: server error", connection_level=True)
        if answer.status_code >= 400:
            raise PermanentError(f"{reason}: {answer.text[:200]}")
        try:
            return f"{reason} {answer.json().get('id', '')}".strip()
        except ValueError:
            return reason

    async def close(self) -> None:
        await self._client.aclose()
