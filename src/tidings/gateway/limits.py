"""The gateway's rate limits, on one limiter: per credential, per client address for failed
authentications and for logins (the API's and the dashboard's), per recipient."""

from __future__ import annotations

import uuid
from typing import Literal

from tidings.core.auth import Principal
from tidings.core.ratelimit import RateLimiter
from tidings.gateway.settings import GatewaySettings


class Limits:
    """Each limit a method: RateLimited (429 with Retry-After) past it."""

    def __init__(self, limiter: RateLimiter, settings: GatewaySettings) -> None:
        self._limiter = limiter
        self._settings = settings

    async def caller(self, caller: Principal) -> None:
        """Per API key and per user; the admin key and the service token are the operator's
        own and not limited."""
        s = self._settings
        if caller.kind == "api_key":
            await self._limiter.check(
                f"key:{caller.subject}",
                caller.rate_per_s or s.rate_limit_per_s,
                caller.burst or s.rate_limit_burst,
                "this API key",
            )
        elif caller.kind == "user":
            await self._limiter.check(
                f"token:{caller.subject}", s.user_rate_per_s, s.user_burst, "this user's requests"
            )

    async def attempts(self, address: str) -> None:
        """Failed authentications (and look-ups of keys not yet known) per client address."""
        await self._limiter.check(
            f"auth:{address}",
            self._settings.auth_failure_rate_per_s,
            self._settings.auth_failure_burst,
            "failed authentications from this address",
        )

    async def login(self, where: Literal["login", "dashboard-login"], address: str) -> None:
        """Login attempts per client address, the API's and the dashboard's each in its own
        bucket: a password or the admin key is worth guessing at."""
        await self._limiter.check(
            f"{where}:{address}",
            self._settings.login_rate_per_s,
            self._settings.login_burst,
            "login attempts",
        )

    async def recipient(self, user_id: uuid.UUID) -> None:
        """Notifications to one user (a skipped one is not counted: it sends nothing)."""
        await self._limiter.check(
            f"user:{user_id}",
            self._settings.recipient_rate_per_s,
            self._settings.recipient_burst,
            "notifications to this user",
        )
