"""One attempt: the message signed as Standard Webhooks says (the ``standardwebhooks``
package), POSTed through the SSRF guard (tidings.core.netguard: every resolved address
checked, the connection made to the checked one), no redirects, a total deadline and a cap
on the answer read."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import httpx
from standardwebhooks import Webhook

from tidings.core.netguard import (
    CallLimits,
    CheckedBackend,
    CheckedTransport,
    NonPublicAddress,
    Resolver,
    bounded_post,
    system_resolver,
)
from tidings.webhooks.secrets import SecretBox
from tidings.webhooks.store import Claimed, Outcome
from tidings.webhooks.urls import check_url

LIMITS = httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30)
USER_AGENT = "Tidings-Webhooks/1"
EXCERPT_CHARS = 1000


# Signers kept per sealed secret (a token is one secret for ever): a Fernet decryption and
# the key's decoding once per endpoint and secret, not at every request. Bounded.
SIGNERS_KEPT = 1024


def signatures(
    signer: Callable[[bytes], Webhook], endpoint: Any, webhook_id: str, at: dt.datetime, body: bytes
) -> str:
    """``v1,<sig>`` with the current secret, and beside it (space-separated, as the
    specification allows) one with the previous secret while its grace period runs."""
    hooks = [signer(endpoint.secret)]
    grace = endpoint.previous_until
    if endpoint.previous_secret is not None and grace is not None and grace > at:
        hooks.append(signer(endpoint.previous_secret))
    text = body.decode()
    return " ".join(hook.sign(webhook_id, at, text) for hook in hooks)


class Sender:
    def __init__(
        self,
        box: SecretBox,
        *,
        allow_insecure: bool,
        timeout_s: float,
        response_bytes: int,
        resolve: Resolver = system_resolver,
    ) -> None:
        self.box = box
        self.limits = CallLimits(timeout_s, response_bytes)
        backend = CheckedBackend(allow_loopback=allow_insecure, resolve=resolve)
        self.http = httpx.AsyncClient(
            timeout=timeout_s,
            follow_redirects=False,
            trust_env=False,  # a proxy would connect where the guard did not check
            transport=CheckedTransport(backend, limits=LIMITS),
        )
        self.allow_insecure = allow_insecure
        self.resolve = resolve
        self._signers: dict[bytes, Webhook] = {}

    def signer(self, sealed: bytes) -> Webhook:
        """The ``standardwebhooks`` signer of a sealed secret (webhooks.secrets)."""
        sealed = bytes(sealed)
        found = self._signers.get(sealed)
        if found is None:
            if len(self._signers) >= SIGNERS_KEPT:
                self._signers.clear()
            found = self._signers[sealed] = Webhook(self.box.open(sealed))
        return found

    async def close(self) -> None:
        await self.http.aclose()

    async def send(self, message: Claimed, endpoint: Any) -> Outcome:
        """The attempt's outcome; never raises for the receiver's sake."""
        at = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        try:
            if not endpoint.url.startswith("https://"):
                # Plain http: development only, to loopback only (checked again now).
                await check_url(
                    endpoint.url, allow_insecure=self.allow_insecure, resolve=self.resolve
                )
            headers = {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "webhook-id": message.webhook_id,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": signatures(
                    self.signer, endpoint, message.webhook_id, at, message.payload
                ),
            }
            answer = await bounded_post(
                self.http, endpoint.url, self.limits, content=message.payload, headers=headers
            )
        except NonPublicAddress as exc:
            return Outcome(None, _ms(started), f"refused: {exc}", None)
        except ValueError as exc:  # the URL's own rules (webhooks.urls)
            return Outcome(None, _ms(started), f"refused: {exc}"[:500], None)
        except (httpx.HTTPError, OSError) as exc:
            return Outcome(None, _ms(started), f"{type(exc).__name__}: {exc}"[:500], None)
        excerpt = answer.content.decode("utf-8", "replace")[:EXCERPT_CHARS]
        return Outcome(answer.status_code, _ms(started), None, excerpt)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1e3, 1)
