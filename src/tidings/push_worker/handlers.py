"""How the push worker delivers one notification.

This release renders the push template and has no transport to send it with (Web Push and
FCM come next): every push notification fails, permanently and with that reason, rather
than being dropped or claimed delivered.
"""

from __future__ import annotations

from tidings.core.errors import InvalidInput, NotFound, PermanentError
from tidings.core.lookups import TemplateDirectory
from tidings.core.messages import NotificationMessage
from tidings.core.rendering import render_content

NO_TRANSPORT = "no push transport is configured: Web Push and FCM are not available yet"


class PushDelivery:
    def __init__(self, templates: TemplateDirectory) -> None:
        self.templates = templates

    async def __call__(self, n: NotificationMessage) -> str:
        try:
            template = await self.templates.get(n.template_code, "push", n.language)
            render_content("push", template, n.variables)
        except (NotFound, InvalidInput) as exc:
            raise PermanentError(f"template {n.template_code!r}: {exc.message}") from exc
        raise PermanentError(NO_TRANSPORT)
