"""The one error tree of Tidings.

Adapters translate third-party exceptions into these at their edge; HTTP handlers turn them
into the envelope with ``status_code``; workers classify delivery failures by ``DeliveryError``
subclass (transient, permanent, recipient-invalid, provider-auth).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal


class TidingsError(Exception):
    """Base of every error Tidings raises on purpose."""

    status_code: ClassVar[int] = 500
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidInput(TidingsError):
    status_code = 422
    default_message = "invalid input"


class Unauthorized(TidingsError):
    status_code = 401
    default_message = "authentication required"


class Forbidden(TidingsError):
    status_code = 403
    default_message = "not allowed"


class NotFound(TidingsError):
    status_code = 404
    default_message = "not found"


class Conflict(TidingsError):
    status_code = 409
    default_message = "conflict"


class RetryAfter:
    """An error that says when to try again: ``retry_after_s``, and the same in whole
    seconds (at least 1) for an HTTP ``Retry-After``, which the error handler sends."""

    retry_after_s: float

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


class DependencyUnavailable(TidingsError):
    """A service or store this one depends on cannot be reached."""

    status_code = 503
    default_message = "a dependency is unavailable"


class StoreUnavailable(RetryAfter, DependencyUnavailable):
    """A store (Redis) cannot be reached or does not answer in time: try again shortly."""

    retry_after_s = 1.0


FailureKind = Literal["transient", "permanent", "recipient_invalid", "provider_auth"]


class DeliveryError(TidingsError):
    """A failure to deliver a notification, classified once for every channel."""

    kind: ClassVar[FailureKind] = "permanent"


class TransientError(DeliveryError):
    """Worth retrying later: timeouts, refused connections, 4xx SMTP replies.

    ``connection_level`` marks failures of the peer itself (refused, timed out, 421), which
    trip its circuit breaker; a per-message rejection (451) does not. ``retry_after_s`` is
    the peer's own wait (an HTTP ``Retry-After``): the retry comes no sooner.
    """

    kind = "transient"

    def __init__(
        self,
        message: str | None = None,
        *,
        connection_level: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.connection_level = connection_level
        self.retry_after_s = retry_after_s


class PermanentError(DeliveryError):
    """Retrying cannot help: a bad template, a 5xx reply about the message."""

    kind = "permanent"


class RecipientInvalid(DeliveryError):
    """The address or device token is dead: stop using it."""

    kind = "recipient_invalid"


class ProviderAuthError(DeliveryError):
    """The provider refused our credentials: alert and hold."""

    kind = "provider_auth"


class NoRecipient(DeliveryError):
    """Nothing to deliver to (a push user without a live device): the notification is
    ``skipped`` with this reason, not failed and not dead-lettered."""

    kind = "permanent"


def describe_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """Pydantic's validation errors as one readable line, ``where: what; ...`` (the request
    body's ``body`` prefix left out: where FastAPI found it, not a field). One way for the
    envelope's 422, a batch item's rejection and the dashboard's forms."""
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        if loc[:1] == ["body"]:  # a field may be named body too: only the first is dropped
            loc = loc[1:]
        parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"
