"""The dashboard's sessions: signing in with the admin key once gives a signed session
cookie (HttpOnly, SameSite=Strict, 8 h; it names a digest of the admin key, so rotating the
key ends every session), and every POST carries a CSRF token derived from the session."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qs

from fastapi import Request

from tidings.core.access import Access
from tidings.core.auth import issue_token, read_token
from tidings.core.errors import Unauthorized

COOKIE = "tidings_dashboard"
TOKEN_TYPE = "dashboard"
SESSION_TTL_S = 8 * 3600.0


def _key_digest(access: Access) -> str:
    return hashlib.sha256((access.admin_key or "").encode()).hexdigest()[:16]


def new_session(access: Access) -> str:
    """A session token for the admin (the admin key has been checked)."""
    claims = {"typ": TOKEN_TYPE, "sub": "admin", "k": _key_digest(access)}
    return issue_token(access.secret_key, claims, SESSION_TTL_S)


def session_of(request: Request, access: Access) -> str | None:
    """The session token of a signed-in admin, or None."""
    token = request.cookies.get(COOKIE)
    if not token or not access.admin_key:
        return None
    try:
        claims = read_token(access.secret_key, token, token_type=TOKEN_TYPE)
    except Unauthorized:
        return None
    if claims.get("sub") != "admin" or claims.get("k") != _key_digest(access):
        return None
    return token


def csrf_of(token: str) -> str:
    return hashlib.sha256(f"csrf:{token}".encode()).hexdigest()


async def form_of(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (the only kind our forms send)."""
    parsed = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def csrf_ok(token: str, form: dict[str, str]) -> bool:
    return hmac.compare_digest(form.get("csrf", ""), csrf_of(token))
