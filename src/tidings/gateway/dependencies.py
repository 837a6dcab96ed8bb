"""The gateway's route dependencies, one ``Annotated`` type per member of its state
(gateway.state.GatewayState), as FastAPI's full-stack template keeps them in one file."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from tidings.core.access import Access
from tidings.core.cache import Cache
from tidings.core.web import ServiceClient
from tidings.gateway.accept import Acceptance
from tidings.gateway.broadcasts import Broadcasts
from tidings.gateway.deadletters import DeadLetters
from tidings.gateway.fanout import Fanout
from tidings.gateway.feedback import Feedback
from tidings.gateway.keys import ApiKeys
from tidings.gateway.limits import Limits
from tidings.gateway.lookups import UserDirectory
from tidings.gateway.proxy import Proxy
from tidings.gateway.queries import NotificationQueries
from tidings.gateway.settings import GatewaySettings
from tidings.gateway.state import GatewayState
from tidings.gateway.suppressions import Suppressions
from tidings.gateway.topics import Topics
from tidings.gateway.transitions import StatusTransitions

T = TypeVar("T")


def _member(pick: Callable[[GatewayState], T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency handing a route one member of the state. Async, so FastAPI calls it on
    the event loop: a plain ``def`` dependency goes through its thread pool on every
    request (docs/performance.md)."""

    async def dependency(request: Request) -> T:
        state: GatewayState = request.app.state.gateway
        return pick(state)

    return dependency


State = Annotated[GatewayState, Depends(_member(lambda s: s))]
Credentials = Annotated[Access, Depends(_member(lambda s: s.access))]
Settings = Annotated[GatewaySettings, Depends(_member(lambda s: s.settings))]
SharedCache = Annotated[Cache, Depends(_member(lambda s: s.cache))]
RateLimits = Annotated[Limits, Depends(_member(lambda s: s.limits))]
Keys = Annotated[ApiKeys, Depends(_member(lambda s: s.api_keys))]
UsersClient = Annotated[ServiceClient, Depends(_member(lambda s: s.users_client))]
TemplatesClient = Annotated[ServiceClient, Depends(_member(lambda s: s.templates_client))]
Users = Annotated[UserDirectory, Depends(_member(lambda s: s.users))]
Forwarder = Annotated[Proxy, Depends(_member(lambda s: s.proxy))]
Suppressed = Annotated[Suppressions, Depends(_member(lambda s: s.suppressions))]
EmailFeedback = Annotated[Feedback, Depends(_member(lambda s: s.feedback))]
Accepting = Annotated[Acceptance, Depends(_member(lambda s: s.acceptance))]
Queries = Annotated[NotificationQueries, Depends(_member(lambda s: s.queries))]
Transitions = Annotated[StatusTransitions, Depends(_member(lambda s: s.transitions))]
Letters = Annotated[DeadLetters, Depends(_member(lambda s: s.dead_letters))]
TopicStore = Annotated[Topics, Depends(_member(lambda s: s.topics))]
BroadcastStore = Annotated[Broadcasts, Depends(_member(lambda s: s.broadcasts))]
FanoutTask = Annotated[Fanout, Depends(_member(lambda s: s.fanout))]
