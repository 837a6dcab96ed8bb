"""HTTP for a user's push devices: /api/v1/users/{user_id}/devices/…

Wiring (users/app.py): ``app.include_router(device_routes.router)``.

A user reaches their own devices; the push worker lists them (``?status=live``) and marks
them dead with the service credential.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import Field

from tidings.core.access import Caller
from tidings.core.envelope import Envelope, PaginationMeta, ok
from tidings.core.limits import MAX_LIMIT, Pagination
from tidings.core.openapi import errors
from tidings.users.dependencies import Devices
from tidings.users.devices_service import StatusFilter
from tidings.users.schemas import DeviceCreate, DeviceDead, DeviceOut


class DevicePages(Pagination):
    limit: Annotated[int, Field(ge=1, le=MAX_LIMIT)] = MAX_LIMIT  # the push worker's page


def _owner(user_id: uuid.UUID, caller: Caller) -> uuid.UUID:
    """The user in the path, once the caller may reach their devices: the user themself,
    or a credential with ``users:write``."""
    caller.require_user_or(user_id, "users:write")
    return user_id


Owner = Annotated[uuid.UUID, Depends(_owner)]

router = APIRouter(prefix="/api/v1/users/{user_id}/devices", tags=["devices"])


# 409: the user has TIDINGS_MAX_DEVICES_PER_USER live devices.
@router.post("/", status_code=201, response_model=Envelope[DeviceOut], responses=errors(409))
async def register_device(
    user_id: Owner, body: DeviceCreate, devices: Devices, response: Response
) -> dict[str, Any]:
    """Register a Web Push subscription or an FCM token: 201 when new; 200 with the
    existing device when the user already has it (made live again if it was dead)."""
    device, created = await devices.register(user_id, body)
    if not created:
        response.status_code = 200
        return ok(device, "device already registered")
    return ok(device, "device registered")


@router.get("/", response_model=Envelope[list[DeviceOut]])
async def list_devices(
    user_id: Owner,
    devices: Devices,
    pages: Annotated[DevicePages, Query()],
    status: StatusFilter = "all",
) -> dict[str, Any]:
    found, total = await devices.list(user_id, status, pages.page, pages.limit)
    meta = PaginationMeta.of(total=total, page=pages.page, limit=pages.limit)
    return ok(found, "devices", meta)


@router.get("/{device_id}/", response_model=Envelope[DeviceOut])
async def get_device(user_id: Owner, device_id: uuid.UUID, devices: Devices) -> dict[str, Any]:
    return ok(await devices.get(user_id, device_id), "device found")


@router.delete("/{device_id}/", response_model=Envelope[DeviceOut])
async def delete_device(user_id: Owner, device_id: uuid.UUID, devices: Devices) -> dict[str, Any]:
    return ok(await devices.delete(user_id, device_id), "device deleted")


@router.post("/{device_id}/dead/", response_model=Envelope[DeviceOut])
async def mark_device_dead(
    user_id: uuid.UUID, device_id: uuid.UUID, body: DeviceDead, devices: Devices, caller: Caller
) -> dict[str, Any]:
    """The push service said the device is gone: it is never used again (until the client
    registers it anew). The push worker's call (service credential)."""
    caller.require_service()
    return ok(await devices.mark_dead(user_id, device_id, body.reason), "device marked dead")
