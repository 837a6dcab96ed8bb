from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from tidings.core.web import from_state
from tidings.gateway.service import NotificationService

Notifications = Annotated[NotificationService, Depends(from_state("notifications"))]
