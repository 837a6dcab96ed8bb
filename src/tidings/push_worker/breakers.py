"""Circuit breakers per push-service origin.

Web Push endpoints are chosen by users, so a single ``webpush`` breaker would let one user
with a few devices on refusing hosts stall Web Push for everybody. Each origin
(scheme://host:port) gets its own breaker instead, made on first use. Their number is
bounded (least recently used go first) so that endpoints on ever new hosts cannot grow the
worker's memory; an evicted breaker only forgets its failures, which costs at most
``failure_threshold`` more refused connections to that one origin."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from tidings.core.breaker import CircuitBreaker

MAX_ORIGINS = 1_000
# /health stays one short line however many origins are open.
SHOWN_IN_HEALTH = 3
ORIGIN_CHARS_IN_HEALTH = 60


class OriginBreakers:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        reset_timeout_s: float,
        max_origins: int = MAX_ORIGINS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.max_origins = max_origins
        self.clock = clock
        self._breakers: OrderedDict[str, CircuitBreaker] = OrderedDict()

    def __len__(self) -> int:
        return len(self._breakers)

    def for_origin(self, origin: str) -> CircuitBreaker:
        """The origin's breaker, made on first use; marks it most recently used."""
        breaker = self._breakers.get(origin)
        if breaker is None:
            breaker = CircuitBreaker(
                f"{self.name} {origin}",
                failure_threshold=self.failure_threshold,
                reset_timeout_s=self.reset_timeout_s,
                clock=self.clock,
            )
            self._breakers[origin] = breaker
            while len(self._breakers) > self.max_origins:
                self._breakers.popitem(last=False)
        else:
            self._breakers.move_to_end(origin)
        return breaker

    def open_origins(self) -> list[str]:
        """Origins whose breaker refuses calls now (half-open ones let a probe through)."""
        return [o for o, b in self._breakers.items() if b.state == "open"]

    async def health(self) -> str | None:
        """None while no origin is open; else one short line, e.g. ``2 of 37 origins open:
        https://a.example, https://b.example`` (/health prefixes the check's name)."""
        opened = self.open_origins()
        if not opened:
            return None
        shown = ", ".join(_shorten(o) for o in opened[:SHOWN_IN_HEALTH])
        more = len(opened) - SHOWN_IN_HEALTH
        if more > 0:
            shown += f" and {more} more"
        return f"{len(opened)} of {len(self._breakers)} origins open: {shown}"


def _shorten(origin: str) -> str:
    if len(origin) <= ORIGIN_CHARS_IN_HEALTH:
        return origin
    return origin[: ORIGIN_CHARS_IN_HEALTH - 1] + "…"
