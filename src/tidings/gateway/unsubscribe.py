"""One-click unsubscribe (RFC 8058). Every email carries a link with a signed token: a POST
to it turns the user's email preference for that email's category off (the whole email
channel for an uncategorised template's, the tokens made before categories) without a login;
a GET only shows a page with a button, because link scanners follow GETs. Not the envelope
for the page: a browser reads it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from tidings.core.auth import read_unsubscribe_token
from tidings.core.envelope import Envelope, ok
from tidings.core.errors import TidingsError, Unauthorized
from tidings.core.openapi import errors
from tidings.gateway.dependencies import Credentials, EmailFeedback, State
from tidings.gateway.pages import render

router = APIRouter(tags=["unsubscribe"])


@router.get(
    "/unsubscribe/{token}/",
    response_class=HTMLResponse,
    responses={400: {"description": "the link is not valid", "content": {"text/html": {}}}},
)
async def confirm_page(token: str, access: Credentials) -> HTMLResponse:
    """A confirmation page; it changes nothing by itself."""
    try:
        _, _, category = read_unsubscribe_token(access.secret_key, token)
    except TidingsError:
        page = render("unsubscribe.html", message="This unsubscribe link is not valid.", token="")
        return HTMLResponse(page, status_code=400)
    what = "these emails" if category is None else f"{category} emails"
    page = render("unsubscribe.html", message=f"Stop receiving {what}?", token=token)
    return HTMLResponse(page)


@router.post(
    "/unsubscribe/{token}/", response_model=Envelope[dict[str, Any]], responses=errors(401)
)
async def one_click(
    token: str, access: Credentials, feedback: EmailFeedback, state: State
) -> dict[str, Any]:
    """The one-click POST (``List-Unsubscribe=One-Click``): the preference goes off."""
    try:
        user_id, channel, category = read_unsubscribe_token(access.secret_key, token)
    except TidingsError as exc:
        raise Unauthorized("this unsubscribe link is not valid") from exc
    await feedback.preference_off(user_id, channel, category)
    # For the admin's webhook endpoints (a user belongs to no one client): docs/webhooks.md.
    event = {"user_id": str(user_id), "channel": channel, "category": category}
    await state.webhook_endpoints.capture("user.unsubscribed", "admin", event)
    return ok(
        {"user_id": str(user_id), "channel": channel, "category": category, "subscribed": False},
        "unsubscribed" if category is None else f"unsubscribed from {category}",
    )
