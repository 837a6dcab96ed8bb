from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from tidings.core.web import from_state
from tidings.users.devices_service import DeviceService
from tidings.users.service import UserService

Users = Annotated[UserService, Depends(from_state("users"))]
Devices = Annotated[DeviceService, Depends(from_state("devices"))]
