"""One attempt: the message signed as Standard Webhooks says (the ``standardwebhooks``
package), POSTed through the SSRF guard (tidings.core.netguard: every resolved address
checked, the connection made to the checked one), no redirects, a total deadline and a cap
on the answer read.

The client is aiohttp's (its HTTP parser in C, a keep-alive pool per host): a sixth to a
fourteenth of the CPU per event httpx took (docs/performance.md, "the webhooks sender on
aiohttp"; docs/decisions.md). Web Push keeps httpx."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from standardwebhooks import Webhook
from yarl import URL

from tidings.core.netguard import (
    CallLimits,
    CheckedResolver,
    NonPublicAddress,
    Resolver,
    system_resolver,
    tls_context,
)
from tidings.webhooks.attempts import Claimed, Outcome
from tidings.webhooks.secrets import SecretBox
from tidings.webhooks.urls import check_url

MAX_CONNECTIONS = 256
KEEPALIVE_S = 30.0
USER_AGENT = "Tidings-Webhooks/1"
EXCERPT_CHARS = 1000


# Signers kept per sealed secret (a token is one secret for ever): a Fernet decryption and
# the key's decoding once per endpoint and secret, not at every request. Bounded (and so
# are the parsed URLs kept, below).
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
        self.guard = CheckedResolver(
            allow_loopback=allow_insecure, resolve=resolve, limit_s=timeout_s
        )
        self._http: aiohttp.ClientSession | None = None
        self.allow_insecure = allow_insecure
        self.resolve = resolve
        self._signers: dict[bytes, Webhook] = {}
        self._targets: dict[str, URL] = {}  # endpoint URLs whose checks cannot change

    def signer(self, sealed: bytes) -> Webhook:
        """The ``standardwebhooks`` signer of a sealed secret (webhooks.secrets)."""
        sealed = bytes(sealed)
        found = self._signers.get(sealed)
        if found is None:
            if len(self._signers) >= SIGNERS_KEPT:
                self._signers.clear()
            found = self._signers[sealed] = Webhook(self.box.open(sealed))
        return found

    @property
    def http(self) -> aiohttp.ClientSession:
        """Made at first use, on the running loop (aiohttp binds a session to its loop)."""
        if self._http is None:
            connector = aiohttp.TCPConnector(
                resolver=self.guard,
                use_dns_cache=False,  # every new connection resolved and checked afresh
                ssl=tls_context(),
                limit=MAX_CONNECTIONS,
                limit_per_host=0,  # the worker bounds each endpoint (its slots)
                keepalive_timeout=KEEPALIVE_S,
            )
            self._http = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # a proxy would connect where the guard did not check
                auto_decompress=False,  # an encoded answer is dropped, never inflated
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),  # send's deadline covers it all
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def send(self, message: Claimed, endpoint: Any) -> Outcome:
        """The attempt's outcome; never raises for the receiver's sake."""
        at = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        try:
            url = await self.target(endpoint.url)
            headers = {
                "content-type": "application/json",
                "user-agent": USER_AGENT,
                "webhook-id": message.webhook_id,
                "webhook-timestamp": str(int(at.timestamp())),
                "webhook-signature": signatures(
                    self.signer, endpoint, message.webhook_id, at, message.payload
                ),
            }
            status, body = await self.post(url, message.payload, headers)
        except NonPublicAddress as exc:
            return Outcome(None, _ms(started), f"refused: {exc}", None)
        except TimeoutError:
            limit = self.limits.deadline_s
            return Outcome(None, _ms(started), f"timeout: no answer within {limit:g} s", None)
        except (aiohttp.InvalidURL, ValueError) as exc:  # the URL's own rules (webhooks.urls)
            return Outcome(None, _ms(started), f"refused: {exc}"[:500], None)
        except (aiohttp.ClientError, OSError) as exc:
            return Outcome(None, _ms(started), f"{type(exc).__name__}: {exc}"[:500], None)
        excerpt = body.decode("utf-8", "replace")[:EXCERPT_CHARS]
        return Outcome(status, _ms(started), None, excerpt)

    async def target(self, url: str) -> URL:
        """``url`` parsed, once its send-time checks passed: a literal address must be
        allowed (aiohttp never asks the resolver about one), and plain http goes to loopback
        only, in development (``check_url`` again). Kept when nothing of that depends on a
        DNS answer (https, or a literal host), so the parse and the checks are made once per
        endpoint URL; a name is checked by the resolver at every new connection anyway."""
        found = self._targets.get(url)
        if found is not None:
            return found
        parsed = URL(url)
        host = parsed.raw_host or ""
        literal = self.guard.check_literal(host)
        if parsed.scheme != "https":
            await check_url(url, allow_insecure=self.allow_insecure, resolve=self.resolve)
        if literal or parsed.scheme == "https":
            if len(self._targets) >= SIGNERS_KEPT:
                self._targets.clear()
            self._targets[url] = parsed
        return parsed

    async def post(self, url: URL, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """The answer's status and at most ``response_bytes`` of its body, all within the
        deadline; no redirect followed (a 3xx is an answer). A body that comes encoded
        although identity was asked for is dropped (a small compressed body may inflate to
        gigabytes); one longer than the cap is not read further (the connection is closed,
        not reused)."""
        cap = self.limits.max_body_bytes
        async with asyncio.timeout(self.limits.deadline_s):
            async with self.http.post(
                url,
                data=body,
                headers={**headers, "accept-encoding": "identity"},
                allow_redirects=False,
            ) as answer:
                kept = bytearray()
                encoded = answer.headers.get("content-encoding", "identity").lower() != "identity"
                while not encoded and len(kept) < cap:
                    chunk = await answer.content.readany()
                    if not chunk:
                        break
                    kept += chunk[: cap - len(kept)]
                if encoded or not answer.content.at_eof():
                    answer.close()  # the rest unread: this connection is not reused
                return answer.status, bytes(kept)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1e3, 1)
