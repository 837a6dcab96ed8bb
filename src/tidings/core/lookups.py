"""Look-ups of other services' data, cached: shared by the gateway and both workers."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson

from tidings.core.cache import MemoryCache
from tidings.core.errors import DependencyUnavailable, InvalidInput, NotFound, PermanentError
from tidings.core.messages import Channel, NotificationMessage
from tidings.core.metrics import CACHE, child
from tidings.core.rendering import render_content_async
from tidings.core.web import ServiceClient


class TemplateDirectory:
    """Active template versions from the templates service, cached in process.

    Compiled Jinja templates are cached by :mod:`tidings.core.rendering` on their source, so
    a cached version is also compiled once.
    """

    def __init__(self, client: ServiceClient, ttl_s: float, *, last_known: bool = False) -> None:
        """``last_known``: while the service is unavailable, answer with the last version
        seen (the gateway, which only checks that a template exists); the workers, which
        render it, wait instead."""
        self.client = client
        self.ttl_s = ttl_s
        self.last_known = last_known
        self._local = MemoryCache(max_entries=10_000)
        self._known = MemoryCache(max_entries=10_000)

    async def get(self, code: str, channel: str, language: str) -> dict[str, Any]:
        key = f"{code}\x00{channel}\x00{language}"
        cached = await self._local.get(key)
        child(CACHE, "templates", "miss" if cached is None else "hit").inc()
        if cached is not None:
            found: dict[str, Any] = orjson.loads(cached)
            return found
        try:
            template: dict[str, Any] = await self.client.get(
                f"/api/v1/templates/{quote(code, safe='')}/",
                params={"channel": channel, "language": language},
            )
        except DependencyUnavailable:
            known = await self._known.get(key) if self.last_known else None
            if known is None:
                raise
            stale: dict[str, Any] = orjson.loads(known)
            return stale
        raw = orjson.dumps(template)
        await self._local.set(key, raw, self.ttl_s)
        if self.last_known:
            await self._known.set(key, raw)
        return template

    async def render(self, channel: Channel, n: NotificationMessage) -> dict[str, Any]:
        """What a worker sends: ``n``'s template for ``channel`` in its language, rendered
        with its variables. A template that does not exist or does not render is a
        PermanentError (no retry can fix it); an unreachable service, DependencyUnavailable."""
        try:
            template = await self.get(n.template_code, channel, n.language)
            return await render_content_async(channel, template, n.variables, cheap_on_loop=True)
        except (NotFound, InvalidInput) as exc:
            raise PermanentError(f"template {n.template_code!r}: {exc.message}") from exc
