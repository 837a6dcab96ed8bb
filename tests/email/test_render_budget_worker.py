"""A template over its render budget fails the email permanently, with the bound it went past
as the reason (the notification's error), and nothing is sent."""

from __future__ import annotations

import pytest

from tests.credentials import SECRET_KEY
from tests.email.test_compose import MemorySender, Templates, handler_notification
from tidings.core.errors import PermanentError
from tidings.email_worker.handlers import EmailDelivery
from tidings.email_worker.settings import EmailSettings


async def test_an_email_over_the_render_budget_fails_permanently_with_the_reason() -> None:
    settings = EmailSettings(
        secret_key=SECRET_KEY,
        email_from="Tidings <no-reply@tidings.example>",
        public_url="https://tidings.example",
    )
    template = {
        "subject": "Hi {{ name }}",
        # Over the budget only with these variables: saved, stopped while rendering.
        "body": "{% for a in link %}{% for b in link %}{{ name }}{% endfor %}{% endfor %}",
        "text_body": "",
    }
    sender = MemorySender()
    handle = EmailDelivery(settings, Templates(template), sender, None)
    n = handler_notification("grace@example.org")
    n = n.model_copy(update={"variables": {"name": "G", "link": "x" * 1000}})
    with pytest.raises(PermanentError) as failed:
        await handle(n)
    assert failed.value.message.startswith("template 'welcome': body: not allowed: over")
    assert sender.sent == []
