"""Consumes the workers' status events from status.queue and records them.

An outage on the way (the gateway's database, the users service of a feedback report) is a
wait: the event goes round again through status's retry tiers, as a new message, so it spends
none of the queue's deliveries and is never dead-lettered for it."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from tidings.core.bus import Bus, BusMessage, DeadLetter, parse, wait_out
from tidings.core.errors import Conflict, NotFound
from tidings.core.messages import StatusEvent
from tidings.core.topology import STATUS_ROUTE
from tidings.core.web import ServiceClient
from tidings.gateway.lookups import UserDirectory
from tidings.gateway.queries import NotificationQueries
from tidings.gateway.suppressions import Suppressions
from tidings.gateway.transitions import StatusTransitions

log = logging.getLogger(__name__)


class StatusConsumer:
    """status.queue's consumer: records each worker's report (and acts on a feedback
    report's suppression and unsubscribe first)."""

    def __init__(
        self,
        transitions: StatusTransitions,
        queries: NotificationQueries,
        users: UserDirectory,
        users_client: ServiceClient,
        suppressions: Suppressions,
        bus: Bus,
    ) -> None:
        self._transitions = transitions
        self._queries = queries
        self._users = users
        self._users_client = users_client
        self._suppressions = suppressions
        self._bus = bus

    async def __call__(self, message: BusMessage) -> None:
        event = parse(StatusEvent, message)
        try:
            await self._record(event)
        except DeadLetter:  # _record's refusals: kept, not retried
            raise
        except Exception as exc:
            await wait_out(self._bus, message, STATUS_ROUTE, exc)

    async def _record(self, event: StatusEvent) -> None:
        try:
            notification_id = uuid.UUID(event.notification_id)
            if event.feedback is not None:
                await self._feedback(notification_id, event)
            elif event.suppress:
                # A hard bounce at RCPT: that address is never sent to again.
                await self._suppressions.add(
                    event.suppress, event.error or "refused by the receiving server", "bounce"
                )
            await self._transitions.record_status(
                notification_id,
                event.channel,
                event.status,
                at=dt.datetime.fromtimestamp(event.at_ms / 1000, dt.UTC),
                error=event.error,
                detail=event.detail,
                # A report from after delivery knows no attempt or round: the current ones.
                attempt=None if event.feedback else event.attempt,
                round_=None if event.feedback else event.round,
                bounced=event.feedback == "bounce",
            )
        except (NotFound, Conflict, ValueError) as exc:
            # Nothing to attach it to: keep it for inspection rather than retrying forever.
            raise DeadLetter(f"status event refused: {exc}") from exc

    async def _feedback(self, notification_id: uuid.UUID, event: StatusEvent) -> None:
        """A DSN or an ARF complaint from the bounce receiver. Anyone can send one over SMTP,
        so only the address the notification went to is ever suppressed. Runs before the
        status is recorded: if the users service is down the event comes back, whole."""
        found = await self._queries.get(notification_id, None)
        if found.notification_type != event.channel:
            raise Conflict(f"notification {notification_id} is not an {event.channel} one")
        if event.feedback == "unsubscribe":
            # The signed mailto: of List-Unsubscribe: the preference goes, the address stays.
            await self._email_off(found.user_id)
            return
        if event.suppress is None and event.feedback != "complaint":
            return
        try:
            user = await self._users.get(found.user_id)
        except NotFound:
            log.info("%s for a user who is gone: nothing to suppress", event.feedback)
            return
        address = str(user.get("email") or "")
        if event.feedback == "complaint":
            # A complaint is about the user, whatever address the report shows (feedback
            # loops often redact it): their address and their email preference go.
            await self._suppress(address, event.detail or "complaint", "complaint")
            await self._email_off(found.user_id)
            return
        if event.suppress and address.lower() == event.suppress.lower():
            await self._suppress(address, event.error or "bounced", "bounce")
        else:
            log.warning(
                "bounce report for notification %s names %s, not the user's address: "
                "the notification fails, nothing is suppressed",
                notification_id,
                event.suppress,
            )

    async def _email_off(self, user_id: uuid.UUID) -> None:
        await self._users_client.request(
            "PATCH", f"/api/v1/users/{user_id}/", json={"preferences": {"email": False}}
        )
        await self._users.forget(user_id)

    async def _suppress(self, address: str, reason: str, source: str) -> None:
        if address:
            await self._suppressions.add(address, reason, source)
