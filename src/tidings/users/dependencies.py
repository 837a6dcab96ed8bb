from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from tidings.core.web import from_state
from tidings.users.devices_service import DeviceService
from tidings.users.service import UserService
from tidings.users.settings import UsersSettings

Users = Annotated[UserService, Depends(from_state("users"))]
Devices = Annotated[DeviceService, Depends(from_state("devices"))]
Settings = Annotated[UsersSettings, Depends(from_state("settings"))]
