"""A push sender under its outbound rate limit (core.outbound): FCM one key, Web Push one key
per origin (each push service its own quota); a 429 with Retry-After pauses that key for
every push worker."""

from __future__ import annotations

from urllib.parse import urlsplit

from tidings.core.outbound import Outbound
from tidings.push_worker.senders import Device, PushContent, PushSender


def webpush_key(device: Device) -> str:
    parts = urlsplit(device.endpoint or "")
    return f"webpush:{parts.scheme}://{parts.netloc}"


class RateLimitedPush:
    def __init__(self, sender: PushSender, outbound: Outbound, rate_per_s: float | None) -> None:
        self.sender = sender
        self.outbound = outbound
        self.rate_per_s = rate_per_s

    async def send(self, device: Device, content: PushContent) -> str:
        key = webpush_key(device) if device.kind == "webpush" else "fcm"
        return await self.outbound.send(
            key, self.rate_per_s, lambda: self.sender.send(device, content)
        )

    async def close(self) -> None:
        await self.sender.close()
