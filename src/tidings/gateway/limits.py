"""The gateway's rate limits, on one limiter: per credential, per client address for failed
authentications and for logins (the API's and the dashboard's), per recipient.

The accept route takes its caller's token and, tentatively, its recipient's in one round
trip (``reserve``); the recipient's outcome is applied when the notification is known to
go (``recipient``, through the reservation of the request's context), and its token given
back if it does not (``release``). See docs/decisions.md, "One Redis round trip per accept".
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from tidings.core.auth import Principal
from tidings.core.ratelimit import Bucket, RateLimiter, refuse_if
from tidings.gateway.settings import GatewaySettings

_RECIPIENT = "notifications to this user"


@dataclass
class Reservation:
    """The recipient's part of a request's one round trip: its wait (0: a token was taken),
    and whether the acceptance has applied it."""

    user_id: uuid.UUID
    wait_s: float
    applied: bool = False


# The reservation of the request being accepted (set by ``reserved``): read by ``recipient``
# in the acceptance's tasks, which copy the request's context.
_RESERVED: ContextVar[Reservation | None] = ContextVar("reserved_recipient", default=None)


class Limits:
    """Each limit a method: RateLimited (429 with Retry-After) past it."""

    def __init__(self, limiter: RateLimiter, settings: GatewaySettings) -> None:
        self._limiter = limiter
        self._settings = settings

    def _caller_bucket(self, caller: Principal) -> tuple[Bucket, str] | None:
        """Per API key and per user; the admin key and the service token are the operator's
        own and not limited."""
        s = self._settings
        if caller.kind == "api_key":
            rate = caller.rate_per_s or s.rate_limit_per_s
            if not rate:  # TIDINGS_RATE_LIMIT_PER_S=0 and no rate of the key's own: off
                return None
            return (f"key:{caller.subject}", rate, caller.burst or s.rate_limit_burst), (
                "this API key"
            )
        if caller.kind == "user":
            return (f"token:{caller.subject}", s.user_rate_per_s, s.user_burst), (
                "this user's requests"
            )
        return None

    def _recipient_bucket(self, user_id: uuid.UUID) -> Bucket | None:
        """None when the limit is off (TIDINGS_RECIPIENT_RATE_PER_S=0)."""
        s = self._settings
        if not s.recipient_rate_per_s:
            return None
        return f"user:{user_id}", s.recipient_rate_per_s, s.recipient_burst

    async def caller(self, caller: Principal) -> None:
        bucket = self._caller_bucket(caller)
        if bucket is not None:
            refuse_if(await self._limiter.take(*bucket[0]), bucket[1])

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
        """Notifications to one user (a skipped one is not counted: it sends nothing). The
        request's reservation for this user, if it has one not yet applied, answers without
        a round trip."""
        reserved = _RESERVED.get()
        if reserved is not None and reserved.user_id == user_id and not reserved.applied:
            reserved.applied = True
            refuse_if(reserved.wait_s, _RECIPIENT)
            return
        bucket = self._recipient_bucket(user_id)
        if bucket is not None:
            refuse_if(await self._limiter.take(*bucket), _RECIPIENT)

    async def reserve(self, caller: Principal, user_id: uuid.UUID) -> Reservation:
        """The caller's token (RateLimited past its limit: then the recipient's bucket is not
        touched) and, tentatively, the recipient's, in one round trip; none when both limits
        are off."""
        bucket = self._caller_bucket(caller)
        recipient = self._recipient_bucket(user_id)
        chain = [b for b in (bucket[0] if bucket else None, recipient) if b is not None]
        waits = await self._limiter.take_chain(chain) if chain else []
        if bucket is not None:
            refuse_if(waits[0], bucket[1])
        if recipient is None:  # nothing to apply or give back
            return Reservation(user_id, 0.0, applied=True)
        return Reservation(user_id, waits[-1])

    @contextlib.contextmanager
    def reserved(self, reservation: Reservation) -> Iterator[Reservation]:
        """``reservation`` is the one ``recipient`` applies within the block."""
        token = _RESERVED.set(reservation)
        try:
            yield reservation
        finally:
            _RESERVED.reset(token)

    async def release(self, reservation: Reservation) -> None:
        """The recipient's token back, if one was taken for a notification that did not go
        (a repeat, a skipped one, an unknown user or template, a refusal)."""
        bucket = self._recipient_bucket(reservation.user_id)
        if bucket is not None and reservation.wait_s == 0 and not reservation.applied:
            await self._limiter.give_back(*bucket)
