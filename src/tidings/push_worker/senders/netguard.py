"""The SSRF guard, now in core (tidings.core.netguard, shared with the webhooks worker)."""

from tidings.core.netguard import (
    CheckedBackend,
    CheckedTransport,
    NonPublicAddress,
    Resolver,
    allowed,
    is_public,
    system_resolver,
)

__all__ = [
    "CheckedBackend",
    "CheckedTransport",
    "NonPublicAddress",
    "Resolver",
    "allowed",
    "is_public",
    "system_resolver",
]
