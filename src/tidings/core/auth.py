"""Who is calling, and what they may do: one model of credentials for every service.

Credentials (all ``Authorization: Bearer …``):

* the admin key (``TIDINGS_ADMIN_API_KEY``): everything;
* API keys of client applications (``tid_…``), created by an admin, stored hashed by the
  gateway, each with scopes;
* a user's access token (a JWT the users service issues at login): the user's own data;
* the service token (``TIDINGS_SERVICE_TOKEN``): the services' calls to each other.

The gateway authenticates a client once and passes the result to the users and templates
services as a short-lived principal token (``X-Tidings-Principal``, a JWT signed with
``TIDINGS_SECRET_KEY``), so they need no key look-up of their own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any, Literal, get_args

import jwt
from pydantic import BaseModel

from tidings.core.errors import Forbidden, Unauthorized

PRINCIPAL_HEADER = "X-Tidings-Principal"
API_KEY_PREFIX = "tid_"

Scope = Literal[
    "notifications:send",
    "notifications:read",
    "notifications:read_all",
    "templates:write",
    "users:write",
    "admin",
]
SCOPES: tuple[str, ...] = get_args(Scope)
Kind = Literal["admin", "api_key", "user", "service"]

_ALGORITHM = "HS256"


class Principal(BaseModel):
    kind: Kind
    subject: str  # the key's id, the user's id, or "admin" / "service"
    scopes: frozenset[str] = frozenset()
    user_id: uuid.UUID | None = None  # for kind "user"
    # Per-key rate limit overrides (requests per second, burst); None: the defaults.
    rate_per_s: float | None = None
    burst: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.kind == "admin" or "admin" in self.scopes

    def may(self, scope: str) -> bool:
        if scope == "notifications:read" and "notifications:read_all" in self.scopes:
            return True  # reading every client's notifications includes one's own
        return self.is_admin or scope in self.scopes

    def require(self, scope: str) -> None:
        if not self.may(scope):
            raise Forbidden(f"this credential lacks the {scope!r} scope")

    def require_service(self) -> None:
        if not (self.is_admin or self.kind == "service"):
            raise Forbidden("this needs the service credential (or the admin key)")

    def require_user_or(self, user_id: uuid.UUID, scope: str) -> None:
        """The user themself, or a credential with ``scope``."""
        if self.kind == "user":
            if self.user_id != user_id:
                raise Forbidden("a user may only reach their own data")
            return
        self.require(scope)


ADMIN = Principal(kind="admin", subject="admin", scopes=frozenset({"admin"}))
# What the services need of each other: users and their devices, notifications (every
# client's; read_all includes read). Not admin: a leaked service token cannot make API keys
# or replay dead letters.
SERVICE = Principal(
    kind="service",
    subject="service",
    scopes=frozenset({"users:write", "notifications:read_all"}),
)


def bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def same_secret(given: str, expected: str | None) -> bool:
    return expected is not None and hmac.compare_digest(given.encode(), expected.encode())


# API keys are 32 random bytes: a fast hash is enough to store them (no dictionary to
# attack), and it lets the gateway find a key by its hash in one indexed look-up.
def new_api_key() -> tuple[str, str]:
    """A new key and its hash: the key is shown once, only the hash is stored."""
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return key, hash_api_key(key)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def issue_token(secret: str, claims: dict[str, Any], ttl_s: float) -> str:
    now = int(time.time())
    return jwt.encode({**claims, "iat": now, "exp": now + int(ttl_s)}, secret, _ALGORITHM)


def read_token(secret: str, token: str, *, token_type: str) -> dict[str, Any]:
    """The claims of a token we signed; Unauthorized if forged, expired or of another type."""
    try:
        claims: dict[str, Any] = jwt.decode(token, secret, algorithms=[_ALGORITHM])
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the token has expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthorized("the token is not valid") from exc
    if claims.get("typ") != token_type:
        raise Unauthorized(f"not a {token_type} token")
    return claims


def user_tokens(
    secret: str, user_id: uuid.UUID, access_ttl_s: float, refresh_ttl_s: float
) -> dict[str, Any]:
    """What login and refresh answer."""
    return {
        "access_token": issue_token(secret, {"typ": "access", "sub": str(user_id)}, access_ttl_s),
        "refresh_token": issue_token(
            secret, {"typ": "refresh", "sub": str(user_id)}, refresh_ttl_s
        ),
        "token_type": "bearer",
        "expires_in": int(access_ttl_s),
    }


def user_principal(secret: str, token: str) -> Principal:
    claims = read_token(secret, token, token_type="access")
    user_id = uuid.UUID(claims["sub"])
    return Principal(kind="user", subject=str(user_id), user_id=user_id)


def seal(secret: str, principal: Principal, ttl_s: float = 60) -> str:
    """The principal token the gateway sends along with a proxied request."""
    return issue_token(secret, {"typ": "principal", "p": principal.model_dump(mode="json")}, ttl_s)


def unseal(secret: str, token: str) -> Principal:
    return Principal.model_validate(read_token(secret, token, token_type="principal")["p"])


UNSUBSCRIBE_TTL_S = 400 * 86400.0  # longer than anyone keeps an email before clicking


def unsubscribe_token(
    secret: str, user_id: str, channel: str = "email", category: str | None = None
) -> str:
    """The signed token of a one-click unsubscribe link (RFC 8058): who, from what (the
    channel, and the category: only that one goes off; none: the whole channel)."""
    claims = {"typ": "unsubscribe", "sub": user_id, "ch": channel}
    if category is not None:
        claims["cat"] = category
    return issue_token(secret, claims, UNSUBSCRIBE_TTL_S)


def read_unsubscribe_token(secret: str, token: str) -> tuple[uuid.UUID, str, str | None]:
    """Who, which channel, which category (None: the whole channel)."""
    claims = read_token(secret, token, token_type="unsubscribe")
    try:
        category = claims.get("cat")
        return (
            uuid.UUID(claims["sub"]),
            str(claims["ch"]),
            None if category is None else str(category),
        )
    except (KeyError, ValueError) as exc:
        raise Unauthorized("the token is not valid") from exc


# The preference centre's link, in every email's footer: it lets anyone holding it change
# the user's preferences, so it expires sooner than an unsubscribe (which only turns off).
PREFERENCES_TTL_S = 90 * 86400.0


def preferences_token(secret: str, user_id: str, ttl_s: float = PREFERENCES_TTL_S) -> str:
    """The signed token of a user's preference centre link (no login)."""
    return issue_token(secret, {"typ": "preferences", "sub": user_id}, ttl_s)


def read_preferences_token(secret: str, token: str) -> uuid.UUID:
    """The user a preference centre link is for; Unauthorized if forged or expired."""
    claims = read_token(secret, token, token_type="preferences")
    try:
        return uuid.UUID(claims["sub"])
    except (KeyError, ValueError) as exc:
        raise Unauthorized("the token is not valid") from exc


def mailto_unsubscribe_tag(secret: str, notification_id: str) -> str:
    """The tag of a ``mailto:`` unsubscribe address: short enough for an address's local
    part (64 characters), signed so that nobody can unsubscribe someone else by mail."""
    nid = uuid.UUID(notification_id).hex
    return f"unsub-{nid}-{_tag_signature(secret, nid)}"


def read_mailto_unsubscribe_tag(secret: str, tag: str) -> str | None:
    """The notification id a genuine tag names, or None."""
    prefix, _, rest = tag.partition("-")
    nid, _, signature = rest.partition("-")
    if prefix != "unsub" or len(nid) != 32:
        return None
    if not hmac.compare_digest(signature, _tag_signature(secret, nid)):
        return None
    return str(uuid.UUID(nid))


def _tag_signature(secret: str, nid: str) -> str:
    return hmac.new(secret.encode(), f"unsubscribe:{nid}".encode(), hashlib.sha256).hexdigest()[:16]
