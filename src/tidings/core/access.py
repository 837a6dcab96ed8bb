"""Authentication as a FastAPI dependency, the same in every service.

Each app keeps an :class:`Access` in ``app.state.access``; routes take ``Caller`` (the
authenticated :class:`Principal`) and check what it may do. The gateway adds a resolver for
API keys (it owns them); the users and templates services accept the gateway's principal
token, the service token, the admin key and users' access tokens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tidings.core.auth import (
    ADMIN,
    API_KEY_PREFIX,
    PRINCIPAL_HEADER,
    SERVICE,
    Principal,
    bearer,
    same_secret,
    unseal,
    user_principal,
)
from tidings.core.errors import Unauthorized
from tidings.core.settings import TidingsSettings

# Resolves an API key; calls its second argument before it looks the key up in the store.
ApiKeyResolver = Callable[[str, Callable[[], Awaitable[None]]], Awaitable[Principal]]


def client_address(request: Request) -> str:
    """The client's address: the TCP peer's, or X-Forwarded-For's when the peer is a trusted
    proxy (TIDINGS_FORWARDED_ALLOW_IPS; ProxyHeadersMiddleware in create_service_app)."""
    return request.client.host if request.client else "unknown"


class Access:
    def __init__(
        self,
        settings: TidingsSettings,
        api_keys: ApiKeyResolver | None = None,
        limit: Callable[[Principal], Awaitable[None]] | None = None,
        limit_attempts: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """``api_keys``: the gateway's resolver. Without one (the users and templates
        services) the gateway's sealed principal is accepted instead; the gateway itself
        never takes one from outside. ``limit``: the gateway's rate limit per credential
        (API key, user). ``limit_attempts``: its limit per client address of the attempts
        that failed or that need a look-up to tell (RateLimited past it)."""
        self.secret_key = settings.secret("secret_key")
        self.service_token = settings.secret("service_token")
        self.admin_key = settings.secret("admin_api_key")
        self.api_keys = api_keys
        self.limit = limit
        self.limit_attempts = limit_attempts

    async def authenticate(self, request: Request, *, limited: bool = True) -> Principal:
        """The caller; ``limited=False`` leaves its rate limit (``limit``) to the route (the
        gateway's accept route takes it with the recipient's, in one round trip)."""
        sealed = request.headers.get(PRINCIPAL_HEADER)
        if sealed and self.api_keys is None:
            return unseal(self.secret_key, sealed)
        address = client_address(request)
        counted = False

        async def attempt() -> None:
            nonlocal counted
            if self.limit_attempts is not None and not counted:
                counted = True
                await self.limit_attempts(address)

        try:
            principal = await self._identify(request, attempt)
        except Unauthorized:
            await attempt()  # 429 instead, once this address has failed too often
            raise
        if limited and self.limit is not None:
            await self.limit(principal)  # per credential: 429 with Retry-After past it
        return principal

    async def _identify(
        self, request: Request, before_lookup: Callable[[], Awaitable[None]]
    ) -> Principal:
        token = bearer(request.headers.get("authorization"))
        if token is None:
            raise Unauthorized("send Authorization: Bearer <API key or access token>")
        if same_secret(token, self.admin_key):
            return ADMIN
        if same_secret(token, self.service_token):
            return SERVICE
        if token.startswith(API_KEY_PREFIX):
            if self.api_keys is None:
                raise Unauthorized("API keys are accepted by the gateway only")
            # A key not yet known costs a look-up: counted per address before it is made,
            # so a guesser is held at the limit without reaching the database.
            return await self.api_keys(token, before_lookup)
        return user_principal(self.secret_key, token)


# Only for the OpenAPI schema: it documents the bearer credential on every route that takes
# one (core.openapi derives their 401/403/429 from it). Access.authenticate reads the header.
_BEARER = HTTPBearer(auto_error=False, description="An API key, access token or admin key")


async def current_principal(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None,
) -> Principal:
    access: Access = request.app.state.access
    principal = await access.authenticate(request)
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(current_principal)]


async def unlimited_principal(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None,
) -> Principal:
    """As ``current_principal``, its rate limit left to the route, which must take it
    before anything else it answers (Limits.caller or Limits.reserve in the gateway)."""
    access: Access = request.app.state.access
    principal = await access.authenticate(request, limited=False)
    request.state.principal = principal
    return principal


UnlimitedCaller = Annotated[Principal, Depends(unlimited_principal)]


async def require_admin(caller: Caller) -> Principal:
    caller.require("admin")
    return caller
