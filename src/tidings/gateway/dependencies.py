from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tidings.gateway.service import NotificationService


def _notifications(request: Request) -> NotificationService:
    service: NotificationService = request.app.state.notifications
    return service


Notifications = Annotated[NotificationService, Depends(_notifications)]
