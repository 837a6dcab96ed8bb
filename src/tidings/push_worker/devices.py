"""The user's devices, from the users service over REST (a service never imports another).

Not cached: a device marked dead must not be contacted by the very next notification, and
it is one small request per notification. These internal calls are not authenticated yet
(service credentials come with the API keys)."""

from __future__ import annotations

import logging
from urllib.parse import quote

from tidings.core.errors import DependencyUnavailable, InvalidInput, NotFound
from tidings.core.web import ServiceClient
from tidings.push_worker.senders import Device

log = logging.getLogger("tidings.push.devices")


class DeviceDirectory:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def live(self, user_id: str) -> list[Device]:
        """The user's live devices; NotFound when the user is gone."""
        found = await self.client.get(
            f"/api/v1/users/{quote(user_id, safe='')}/devices/",
            params={"status": "live", "limit": "100"},
        )
        return [Device.from_api(d) for d in found or []]

    async def mark_dead(self, user_id: str, device_id: str, reason: str) -> None:
        """Best effort: if the users service cannot be told now, the device answers 410
        again next time and is marked then."""
        path = f"/api/v1/users/{quote(user_id, safe='')}/devices/{quote(device_id, safe='')}"
        try:
            await self.client.post(f"{path}/dead/", {"reason": reason[:1000]})
        except (DependencyUnavailable, NotFound, InvalidInput) as exc:
            log.warning("could not mark device %s dead: %s", device_id, exc.message)
