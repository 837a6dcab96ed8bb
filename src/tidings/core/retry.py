"""Retry policy: exponential backoff with full jitter, mapped onto fixed-TTL delay tiers.

Pure functions: the delay is computed here, the bus turns it into a message waiting in the
retry queue of its tier (never a sleep in a consumer).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tidings.core.topology import RETRY_TIERS_MS


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 1.0
    cap_s: float = 300.0

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): a uniform
        draw from [0, min(cap, base * 2**(attempt-1))] after attempt number ``attempt``."""
        ceiling = min(self.cap_s, self.base_s * 2 ** max(0, attempt - 1))
        return (rng or random).uniform(0, ceiling)

    def should_retry(self, attempt: int) -> bool:
        return attempt < self.max_attempts


def tier_for(delay_s: float) -> int:
    """The delay tier (milliseconds) a wait of ``delay_s`` goes to: the longest tier not
    longer than the delay, and at least the shortest tier."""
    delay_ms = delay_s * 1000
    chosen = RETRY_TIERS_MS[0]
    for tier in RETRY_TIERS_MS:
        if tier <= delay_ms:
            chosen = tier
    return chosen


def retry_queue(routing_key: str, tier_ms: int) -> str:
    return f"{routing_key}.retry.{tier_ms}ms"
