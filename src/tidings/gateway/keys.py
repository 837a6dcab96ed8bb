"""API keys: created by an admin, shown once, stored as a hash, resolved on every request."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import select

from tidings.core.auth import Principal, hash_api_key, new_api_key
from tidings.core.cache import MemoryCache
from tidings.core.db import Database, utcnow
from tidings.core.errors import NotFound, Unauthorized
from tidings.gateway.models import ApiKey
from tidings.gateway.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut

# A resolved key is remembered this long in process: a revocation reaches the other
# replicas within it.
KEY_CACHE_S = 30.0
# A key that is not there is remembered this long, so a flood of made-up keys costs no
# database query each; a key just created is never one of them (it is 32 random bytes).
MISS_CACHE_S = 10.0
_MISS = b"-"


def to_out(row: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        api_key_id=row.id,
        name=row.name,
        scopes=row.scopes,
        rate_per_s=row.rate_per_s,
        burst=row.burst,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


class ApiKeys:
    """The API keys of the clients: made, listed and revoked by the admin; resolved to a
    principal on each request, remembered in process for ``KEY_CACHE_S``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._resolved = MemoryCache(max_entries=10_000)
        # Apart from the resolved keys, so made-up keys cannot push the good ones out.
        self._missing = MemoryCache(max_entries=10_000)
        self.lookups = 0  # queries made to resolve a key (tests read it)
        # One look-up per key at a time: the requests that arrive while it runs share it.
        self._looking: dict[str, asyncio.Future[Principal]] = {}

    async def create(self, body: ApiKeyCreate) -> ApiKeyCreated:
        key, key_hash = new_api_key()
        row = ApiKey(
            id=uuid.uuid4(),
            name=body.name,
            key_hash=key_hash,
            scopes=sorted(set(body.scopes)),
            rate_per_s=body.rate_per_s,
            burst=body.burst,
            created_at=utcnow(),
        )
        async with self.db.sessions() as session:
            session.add(row)
            await session.commit()
        return ApiKeyCreated(**to_out(row).model_dump(), key=key)

    async def list(self) -> list[ApiKeyOut]:
        async with self.db.sessions() as session:
            rows = (await session.scalars(select(ApiKey).order_by(ApiKey.created_at))).all()
        return [to_out(r) for r in rows]

    async def revoke(self, api_key_id: uuid.UUID) -> ApiKeyOut:
        async with self.db.sessions() as session, session.begin():
            row = await session.get(ApiKey, api_key_id)
            if row is None:
                raise NotFound(f"API key {api_key_id} not found")
            row.revoked_at = row.revoked_at or utcnow()
        await self._resolved.delete(row.key_hash)
        await self._missing.set(row.key_hash, _MISS, MISS_CACHE_S)
        return to_out(row)

    async def resolve(self, key: str, before_lookup: Callable[[], Awaitable[None]]) -> Principal:
        """The key's principal; Unauthorized if unknown or revoked. ``before_lookup`` runs
        before a query is made (the gateway's limit per client address)."""
        key_hash = hash_api_key(key)
        cached = await self._resolved.get(key_hash)
        if cached is not None:
            return Principal.model_validate_json(cached)
        if await self._missing.get(key_hash) is not None:
            raise Unauthorized("unknown or revoked API key")
        while (running := self._looking.get(key_hash)) is not None:
            # A busy client's requests all miss together when the key's entry expires: they
            # wait for the one look-up instead of each being charged to the address's limit
            # of unverified authentications (a valid key was answered 429 so). If the
            # request making it goes away mid-way, a waiting one makes its own.
            await asyncio.wait([running])
            if not running.cancelled():
                return running.result()
        future: asyncio.Future[Principal] = asyncio.get_running_loop().create_future()
        self._looking[key_hash] = future
        try:
            principal = await self._look_up(key_hash, before_lookup)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        finally:
            del self._looking[key_hash]
        future.set_result(principal)
        return principal

    async def _look_up(
        self, key_hash: str, before_lookup: Callable[[], Awaitable[None]]
    ) -> Principal:
        await before_lookup()
        self.lookups += 1
        async with self.db.sessions() as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
        if row is None or row.revoked_at is not None:
            await self._missing.set(key_hash, _MISS, MISS_CACHE_S)
            raise Unauthorized("unknown or revoked API key")
        principal = Principal(
            kind="api_key",
            subject=str(row.id),
            scopes=frozenset(row.scopes),
            rate_per_s=row.rate_per_s,
            burst=row.burst,
        )
        await self._resolved.set(key_hash, principal.model_dump_json().encode(), KEY_CACHE_S)
        return principal
