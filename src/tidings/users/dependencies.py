from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tidings.users.service import UserService


def _users(request: Request) -> UserService:
    service: UserService = request.app.state.users
    return service


Users = Annotated[UserService, Depends(_users)]
