"""The user's devices, from the users service over REST (a service never imports another).

Every call carries the service credential (``TIDINGS_SERVICE_TOKEN``, set on the client in
app.py): listing a user's devices and marking one dead are the push worker's privileges. A
401 or 403 means that credential is wrong or missing, a misconfiguration of the deployment,
not a fault of the notification: ``ServiceClient`` raises ``DependencyUnavailable`` for it, so
the notification waits without spending an attempt (never failed, never requeued in a loop),
and the refusals open the users breaker, which /health shows.

Not cached: a device marked dead must not be contacted by the very next notification, and
it is one small request per notification (one per hundred devices).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from tidings.core.errors import DependencyUnavailable, InvalidInput, NotFound
from tidings.core.web import ServiceClient
from tidings.push_worker.senders import Device

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # the users service's largest page
# A bound on one user's fan-out: past it the rest are not sent to (and it is logged).
MAX_DEVICES = 1_000


class DeviceDirectory:
    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def live(self, user_id: str) -> list[Device]:
        """The user's live devices (at most ``MAX_DEVICES``); NotFound when the user is
        gone. Pages are read in the users service's order (oldest first); a device added
        or removed between two pages may be missed by this attempt, never sent twice."""
        path = f"/api/v1/users/{quote(user_id, safe='')}/devices/"
        found: dict[str, Device] = {}
        for page in range(1, MAX_DEVICES // PAGE_SIZE + 1):
            rows: list[dict[str, Any]] = (
                await self.client.get(
                    path, params={"status": "live", "limit": str(PAGE_SIZE), "page": str(page)}
                )
                or []
            )
            for row in rows:
                device = Device.from_api(row)
                found.setdefault(device.device_id, device)
            if len(rows) < PAGE_SIZE:
                break
        else:
            log.warning(
                "user %s has %d live devices or more; sending to the first %d only",
                user_id,
                MAX_DEVICES,
                MAX_DEVICES,
            )
        return list(found.values())

    async def mark_dead(self, user_id: str, device_id: str, reason: str) -> None:
        """Best effort: if the users service cannot be told now, the device answers 410
        again next time and is marked then."""
        path = f"/api/v1/users/{quote(user_id, safe='')}/devices/{quote(device_id, safe='')}"
        try:
            await self.client.post(f"{path}/dead/", {"reason": reason[:1000]})
        except (DependencyUnavailable, NotFound, InvalidInput) as exc:
            log.warning("could not mark device %s dead: %s", device_id, exc.message)
