"""OAuth2 access tokens for FCM from a service-account key (RFC 7523 JWT bearer grant, as
Google's token endpoint takes it): a JWT signed with the key, posted to the key's
``token_uri``; the token is cached until shortly before it expires, one refresh at a time."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt

from tidings.core.errors import ProviderAuthError, TransientError
from tidings.push_worker.senders import retry_after_s

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME_S = 3600


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    private_key: str
    token_uri: str
    project_id: str | None = None
    private_key_id: str | None = None

    @classmethod
    def from_json(cls, text: str) -> ServiceAccount:
        data: dict[str, Any] = json.loads(text)
        missing = [k for k in ("client_email", "private_key", "token_uri") if not data.get(k)]
        if missing:
            raise ValueError(f"the FCM service-account key lacks {', '.join(missing)}")
        return cls(
            client_email=data["client_email"],
            private_key=data["private_key"],
            token_uri=data["token_uri"],
            project_id=data.get("project_id"),
            private_key_id=data.get("private_key_id"),
        )

    @classmethod
    def from_file(cls, path: str) -> ServiceAccount:
        return cls.from_json(Path(path).read_text())


class AccessTokens:
    def __init__(
        self, account: ServiceAccount, http: httpx.AsyncClient, clock: Any = time.monotonic
    ) -> None:
        """``clock`` times the cache; the assertion's iat/exp are wall-clock time."""
        self.account = account
        self.http = http
        self.clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._renew_at = 0.0
        self._lock = asyncio.Lock()
        self.fetched = 0  # tokens obtained so far (for /health and tests)

    async def get(self) -> str:
        if self._token is not None and self.clock() < self._renew_at:
            return self._token
        async with self._lock:  # one refresh at a time; the others take its token
            if self._token is None or self.clock() >= self._renew_at:
                await self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        """The API refused ``token`` (401): the next ``get`` fetches a new one."""
        if self._token == token:
            self._token = None

    def assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.account.client_email,
            "sub": self.account.client_email,
            "scope": SCOPE,
            "aud": self.account.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_S,
        }
        headers = {"kid": self.account.private_key_id} if self.account.private_key_id else None
        try:
            return jwt.encode(claims, self.account.private_key, "RS256", headers=headers)
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise ProviderAuthError(f"cannot sign with the FCM service-account key: {exc}") from exc

    async def _fetch(self) -> None:
        try:
            answer = await self.http.post(
                self.account.token_uri,
                data={"grant_type": GRANT_TYPE, "assertion": self.assertion()},
            )
        except httpx.HTTPError as exc:
            raise TransientError(
                f"FCM token endpoint unreachable: {exc!r}", connection_level=True
            ) from exc
        said = answer.text[:200]
        if answer.status_code == 429 or answer.status_code >= 500:
            raise TransientError(
                f"FCM token endpoint answered {answer.status_code}: {said}",
                retry_after_s=retry_after_s(answer.headers.get("retry-after")),
            )
        if answer.status_code != 200:
            raise ProviderAuthError(f"FCM token endpoint refused: {answer.status_code} {said}")
        try:
            body = answer.json()
            token, lifetime_s = str(body["access_token"]), float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientError(f"FCM token endpoint answered no token: {said}") from exc
        now = self.clock()
        self._token = token
        self._expires_at = now + lifetime_s
        # Renew a minute early (a tenth early for short-lived tokens), so no request
        # carries a token that expires on its way.
        self._renew_at = self._expires_at - min(60.0, lifetime_s / 10)
        self.fetched += 1
