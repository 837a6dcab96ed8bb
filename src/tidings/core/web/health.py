"""The checks behind /health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

HealthCheck = Callable[[], Awaitable[Any]]

# /health runs its checks at most this often; callers in between share the last results
# (and a run under way), so a flood of /health costs no more than one a second.
HEALTH_CACHE_S = 1.0


class HealthRegistry:
    """Named checks a service registers at start; /health runs them all."""

    def __init__(self, max_age_s: float = HEALTH_CACHE_S) -> None:
        self.checks: dict[str, HealthCheck] = {}
        # Facts shown in /health that are not pass/fail (the instances a gateway sees).
        self.info: dict[str, HealthCheck] = {}
        self.max_age_s = max_age_s
        self.runs = 0  # how many times the checks ran (tests read it)
        self._run: asyncio.Future[dict[str, str]] | None = None  # the last run, or this one
        self._ran_at = 0.0  # when the last run finished

    def add(self, name: str, check: HealthCheck) -> None:
        self.checks[name] = check

    async def run(self) -> dict[str, str]:
        """The checks' results, at most ``max_age_s`` old."""
        stale = time.monotonic() - self._ran_at >= self.max_age_s
        if self._run is None or (self._run.done() and stale):
            self._run = asyncio.ensure_future(self._run_all())
        # Shielded: one caller that goes away does not cancel the run the others await.
        return await asyncio.shield(self._run)

    async def _run_all(self) -> dict[str, str]:
        self.runs += 1
        results: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                detail = await check()
                results[name] = "ok" if detail in (None, True) else str(detail)
            except Exception as exc:  # a health check reports, never raises
                results[name] = f"error: {exc.__class__.__name__}: {exc}"[:300]
        self._ran_at = time.monotonic()
        return results
