"""What the push worker does with one message from push.queue.

This release renders the push template and has no transport to send it with (Web Push and
FCM come next): every push notification fails, permanently and with that reason, rather
than being dropped or claimed delivered.
"""

from __future__ import annotations

from tidings.core.bus import Bus, BusMessage, parse
from tidings.core.errors import DeliveryError, InvalidInput, NotFound, PermanentError
from tidings.core.lookups import TemplateDirectory
from tidings.core.messages import NotificationMessage
from tidings.core.rendering import render_content
from tidings.core.worker import fail

NO_TRANSPORT = "no push transport is configured: Web Push and FCM are not available yet"


class PushHandler:
    def __init__(self, bus: Bus, templates: TemplateDirectory) -> None:
        self.bus = bus
        self.templates = templates

    async def __call__(self, message: BusMessage) -> None:
        n = parse(NotificationMessage, message)
        try:
            try:
                template = await self.templates.get(n.template_code, "push", n.language)
                render_content("push", template, n.variables)
            except (NotFound, InvalidInput) as exc:
                raise PermanentError(f"template {n.template_code!r}: {exc.message}") from exc
            raise PermanentError(NO_TRANSPORT)
        except DeliveryError as exc:
            raise await fail(self.bus, n, "push", exc) from exc
