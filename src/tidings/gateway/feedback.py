"""Email feedback, whichever way it comes: the bounce receiver's reports (status events with
``feedback`` set), Mailgun's signed event webhook, the unsubscribe links. One rule for all.

A report may name another address than the one the notification went to: anyone can send
a DSN over SMTP, and a provider's event carries whatever recipient its side saw (a forward,
an alias, an address changed since). So only the user's own address is ever suppressed:

- bounce: the user's address is suppressed when the report names it; a report naming
  another suppresses nothing (the notification still fails, its caller records that).
- complaint: about the user, whatever address the report shows (feedback loops often
  redact it): their address is suppressed and their email preference goes off.
- unsubscribe: the preference goes off (for the email's category only, when its template has
  one; a critical category's emails carry no unsubscribe); the address stays.
- soft bounce: nothing here (the history keeps it).
- refused at RCPT (the worker's own SMTP dialogue, a 5xx to RCPT TO): the address it sent
  to is suppressed, as our side of the connection saw it.

Runs before the caller records the status: if the users service is down, the whole report
comes back later (the status event waits; Mailgun sends its event again).
"""

from __future__ import annotations

import logging
import uuid
from typing import Literal

from tidings.core.errors import Conflict, NotFound
from tidings.core.lookups import TemplateDirectory
from tidings.core.web import ServiceClient
from tidings.gateway.lookups import UserDirectory
from tidings.gateway.queries import NotificationQueries
from tidings.gateway.suppressions import Suppressions

log = logging.getLogger(__name__)

Kind = Literal["bounce", "soft_bounce", "complaint", "unsubscribe"]


class Feedback:
    """Applies email feedback to the suppression list and the user's preferences."""

    def __init__(
        self,
        queries: NotificationQueries,
        users: UserDirectory,
        users_client: ServiceClient,
        suppressions: Suppressions,
        templates: TemplateDirectory | None = None,
    ) -> None:
        """``templates``: where an unsubscribe by mail finds its email's category (None: it
        turns the whole channel off)."""
        self.queries = queries
        self.users = users
        self.users_client = users_client
        self.suppressions = suppressions
        self.templates = templates

    async def preference_off(
        self, user_id: uuid.UUID, channel: str, category: str | None = None
    ) -> None:
        """Turn the user's ``channel`` preference off at the users service (for ``category``
        only, if given), and drop the gateway's cached copy so that the next notification
        sees it."""
        change: dict[str, object] = (
            {channel: False} if category is None else {"categories": {category: {channel: False}}}
        )
        await self.users_client.request(
            "PATCH", f"/api/v1/users/{user_id}/", json={"preferences": change}
        )
        await self.users.forget(user_id)

    async def _category_of(self, template_code: str, language: str) -> tuple[str | None, bool]:
        """The category of an email's template and whether it is critical ((None, False)
        when the template or the service is gone: the whole channel goes off, as before)."""
        if self.templates is None:
            return None, False
        try:
            found = await self.templates.get(template_code, "email", language)
        except NotFound:
            return None, False
        return found.get("category"), bool(found.get("critical"))

    async def apply(
        self, notification_id: uuid.UUID, kind: Kind, reported: str | None, reason: str
    ) -> None:
        """Apply a report of ``kind`` about ``notification_id``; ``reported`` is the address
        the report names (None when it names none), ``reason`` what the suppression keeps.
        NotFound for an unknown notification, Conflict for one that is not an email."""
        found = await self.queries.get(notification_id, None)
        if found.notification_type != "email":
            raise Conflict(f"notification {notification_id} is not an email one")
        if kind == "unsubscribe":
            category, critical = await self._category_of(found.template_code, found.language)
            if critical:
                log.info("unsubscribe from a critical category's email: nothing changes")
                return
            await self.preference_off(found.user_id, "email", category)
            return
        if kind == "soft_bounce" or (kind == "bounce" and not reported):
            return
        try:
            user = await self.users.get(found.user_id)
        except NotFound:
            log.info("%s for a user who is gone: nothing to suppress", kind)
            return
        address = str(user.get("email") or "")
        if kind == "complaint":
            await self._suppress(address, reason, "complaint")
            await self.preference_off(found.user_id, "email")
            return
        if reported and address.lower() == reported.lower():
            await self._suppress(address, reason, "bounce")
            return
        log.warning(
            "bounce report for notification %s names %s, not the user's address: "
            "the notification fails, nothing is suppressed",
            notification_id,
            reported,
        )

    async def refused_at_rcpt(self, address: str, reason: str) -> None:
        """A hard bounce in the worker's own SMTP dialogue (a 5xx to RCPT TO): the address is
        the one the notification was sent to, read from our side of the connection, so it
        is suppressed as it is (no report from outside to check against the user)."""
        await self._suppress(address, reason, "bounce")

    async def _suppress(self, address: str, reason: str, source: str) -> None:
        if address:
            await self.suppressions.add(address, reason, source)
