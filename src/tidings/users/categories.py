"""The critical categories, asked of the templates service (which owns categories), so that a
user's preferences can never turn one off. Asked only when a change turns a category's
channel off; kept for a short while, and asked again for a key not seen yet (a category made
a moment ago). A category made critical later is still never skipped: the gateway reads the
flag with the template at each notification.)"""

from __future__ import annotations

import time
from typing import Any

from tidings.core.errors import InvalidInput
from tidings.core.web import ServiceClient

CACHE_S = 30.0
_PAGE = 100


class CriticalCategories:
    def __init__(self, client: ServiceClient | None) -> None:
        """``client``: the templates service; None (a users service alone, in tests of its
        own) knows no categories, so none is critical."""
        self.client = client
        self._known: frozenset[str] = frozenset()
        self._seen: frozenset[str] = frozenset()
        self._until = 0.0

    async def critical(self, keys_asked: list[str]) -> frozenset[str]:
        if self.client is None:
            return frozenset()
        fresh = time.monotonic() < self._until
        if fresh and all(k in self._seen for k in keys_asked):
            return self._known
        seen: set[str] = set()
        keys: set[str] = set()
        page = 1
        while True:  # DependencyUnavailable (503) if the templates service is down
            found: list[dict[str, Any]] = await self.client.get(
                "/api/v1/templates/categories/", params={"page": str(page), "limit": str(_PAGE)}
            )
            keys.update(c["key"] for c in found if c.get("critical"))
            seen.update(c["key"] for c in found)
            if len(found) < _PAGE:
                break
            page += 1
        self._known, self._seen = frozenset(keys), frozenset(seen)
        self._until = time.monotonic() + CACHE_S
        return self._known

    async def check(self, categories: dict[str, dict[str, bool]]) -> None:
        """InvalidInput (422) if ``categories`` turns a channel of a critical one off."""
        off = sorted(k for k, channels in categories.items() if False in channels.values())
        if not off:
            return
        critical = await self.critical(off)
        refused = [k for k in off if k in critical]
        if refused:
            raise InvalidInput(
                f"preferences.categories: {', '.join(refused)} cannot be turned off (critical)"
            )
