"""The accept path of a broadcast's pages (gateway.fanout): the page's users from one batch
look-up, one template look-up per language, the suppression list in one statement for the
page and the recipients' rate limit taken concurrently, then ``Acceptance`` as for any send,
with the outbox rows in the bulk lane."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast

from tidings.core.errors import NotFound, TidingsError
from tidings.core.topology import BULK_ROUTES
from tidings.gateway.accept import Acceptance, Outcome
from tidings.gateway.models import OutboxMessage
from tidings.gateway.schemas import NotificationCreate
from tidings.gateway.suppressions import Suppressions

# The users of the page being accepted, by id (set by the fan-out around accept_many).
_page_users: ContextVar[dict[uuid.UUID, dict[str, Any]] | None] = ContextVar(
    "page_users", default=None
)
# The template look-ups of the page being accepted, one per (code, channel, language).
_page_template_calls: ContextVar[dict[tuple[str, str, str], asyncio.Future[Any]] | None] = (
    ContextVar("page_template_calls", default=None)
)
LOOKUP_BATCH = 1000  # the users service's batch look-up takes this many ids at most
# A page is accepted a slice at a time, the event loop let go of between slices: a page's
# accept in one piece put some 500 look-up tasks at once ahead of a transactional request
# on the gateway's event loop (docs/broadcasts.md, "The bulk lane").
ACCEPT_SLICE = 100


@dataclass
class _PageChecks:
    """What the page's accept would otherwise ask once per recipient, asked for the page:
    the suppression list (one statement for the page) and the recipients' rate limit
    (taken concurrently for a slice, not one round trip after another)."""

    suppressed: dict[str, str] = field(default_factory=dict)  # address: reason, or ""
    limited: dict[uuid.UUID, BaseException | None] = field(default_factory=dict)


_page_checks: ContextVar[_PageChecks | None] = ContextVar("page_checks", default=None)


class _PageSuppressions:
    """The suppression list as the fan-out's accept sees it: the page's answers."""

    def __init__(self, suppressions: Suppressions) -> None:
        self._suppressions = suppressions

    async def reason_for(self, address: str) -> str | None:
        checks = _page_checks.get()
        reason = None if checks is None else checks.suppressed.get(address.lower())
        if reason is None:  # not among the page's addresses
            return await self._suppressions.reason_for(address)
        return reason or None


class BulkAcceptance(Acceptance):
    """The accept path for a broadcast's pages: the users come from the page's batch
    look-up (not one call each), the suppression list and the recipients' rate limit are
    asked for the page at once (``accept_page``), and the outbox rows go to the bulk lane."""

    def __init__(self, *args: Any) -> None:
        """``Acceptance``'s arguments; its suppression list and recipients' limit are then
        seen through the page's answers (``accept_page``)."""
        super().__init__(*args)
        self._page_templates = self._templates
        self._page_suppressions = self._suppressions
        self._take_recipient = self._limit_recipient
        self._suppressions = cast(Suppressions, _PageSuppressions(self._suppressions))
        self._limit_recipient = self._limit_from_page

    async def _limit_from_page(self, user_id: uuid.UUID) -> None:
        checks = _page_checks.get()
        if checks is None or user_id not in checks.limited:
            return await self._take_recipient(user_id)
        refused = checks.limited.pop(user_id)  # taken once: a second use takes again
        if refused is not None:
            raise refused
        return None

    async def lookups(self, body: NotificationCreate) -> tuple[dict[str, Any], dict[str, Any]]:
        user = (_page_users.get() or {}).get(body.user_id)
        if user is None:
            raise NotFound(f"user {body.user_id} not found")
        return user, await self._template(
            body.template_code, body.notification_type, user.get("language", "en")
        )

    async def _template(self, code: str, channel: str, language: str) -> dict[str, Any]:
        # One look-up per template and language for the page, shared by its recipients: a
        # page of a template not yet cached asked the templates service hundreds of times at
        # once, ran its connection pool dry and opened its breaker.
        key = (code, channel, language)
        asked = _page_template_calls.get()
        if asked is None:
            return await self._page_templates.get(*key)
        if key not in asked:
            asked[key] = asyncio.ensure_future(self._page_templates.get(*key))
        return await asyncio.shield(asked[key])

    async def accept_page(
        self, bodies: list[NotificationCreate], users: dict[uuid.UUID, dict[str, Any]], owner: str
    ) -> list[Outcome]:
        """``accept_many`` of a page whose ``users`` were looked up together, a slice at a
        time, the event loop let go of between slices."""
        token = _page_users.set(users)
        calls = _page_template_calls.set({})
        checks = _PageChecks()
        checked = _page_checks.set(checks)
        outcomes: list[Outcome] = []
        try:
            checks.suppressed = await self.suppressed(users.values())
            for start in range(0, len(bodies), ACCEPT_SLICE):
                part = bodies[start : start + ACCEPT_SLICE]
                checks.limited = await self.take_limits(part, checks)
                outcomes += await self.accept_many(part, owner)
                await asyncio.sleep(0)  # a transactional request's turn on the event loop
        finally:
            _page_checks.reset(checked)
            _page_template_calls.reset(calls)
            _page_users.reset(token)
        return outcomes

    async def suppressed(self, users: Collection[dict[str, Any]]) -> dict[str, str]:
        """The page's addresses on the suppression list, in one statement."""
        return await self._page_suppressions.reasons_for(
            [u["email"] for u in users if u.get("email")]
        )

    async def take_limits(
        self, bodies: list[NotificationCreate], checks: _PageChecks
    ) -> dict[uuid.UUID, BaseException | None]:
        """The recipient's token for each of ``bodies`` that will be sent (``admit``'s
        order: the preferences, then the suppression list, then the limit; a skipped
        notification takes none), taken concurrently."""
        users = _page_users.get() or {}
        wanted: list[uuid.UUID] = []
        for body in bodies:
            user = users.get(body.user_id)
            if user is None or body.user_id in wanted:
                continue
            try:
                template = await self._template(
                    body.template_code, body.notification_type, user.get("language", "en")
                )
            except TidingsError:  # admit is not reached: the accept says why
                continue
            decision = self.rules.decide(
                body.notification_type, user, template, body.priority, body.send_at
            )
            address = (user.get("email") or "").lower()
            if decision.skip is not None or (
                body.notification_type == "email" and checks.suppressed.get(address)
            ):
                continue
            wanted.append(body.user_id)
        taken = await asyncio.gather(
            *(self._take_recipient(u) for u in wanted), return_exceptions=True
        )
        refused: dict[uuid.UUID, BaseException | None] = {}
        for user_id, outcome in zip(wanted, taken, strict=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome  # a cancel
            refused[user_id] = outcome if isinstance(outcome, BaseException) else None
        return refused

    def build(self, body: NotificationCreate, *args: Any, **kwargs: Any) -> list[Any]:
        rows = super().build(body, *args, **kwargs)
        for row in rows:
            if isinstance(row, OutboxMessage):
                row.routing_key = BULK_ROUTES[body.notification_type]
        return rows
