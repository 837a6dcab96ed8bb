"""One-click unsubscribe (RFC 8058). Every email carries a link with a signed token: a POST
to it turns the user's email preference off without a login; a GET only shows a page with a
button, because link scanners follow GETs. Not the envelope for the page: a browser reads it."""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tidings.core.auth import read_unsubscribe_token
from tidings.core.envelope import Envelope, ok
from tidings.core.errors import TidingsError, Unauthorized
from tidings.core.openapi import errors

router = APIRouter(tags=["unsubscribe"])

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Unsubscribe</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 4rem auto">
<h1>Unsubscribe</h1><p>{message}</p>{form}</body></html>"""


@router.get(
    "/unsubscribe/{token}/",
    response_class=HTMLResponse,
    responses={400: {"description": "the link is not valid", "content": {"text/html": {}}}},
)
async def confirm_page(token: str, request: Request) -> HTMLResponse:
    """A confirmation page; it changes nothing by itself."""
    try:
        read_unsubscribe_token(request.app.state.access.secret_key, token)
    except TidingsError:
        page = _PAGE.format(message="This unsubscribe link is not valid.", form="")
        return HTMLResponse(page, status_code=400)
    form = (
        f'<form method="post" action="/unsubscribe/{html.escape(token)}/">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Stop these emails</button></form>'
    )
    return HTMLResponse(_PAGE.format(message="Stop receiving these emails?", form=form))


@router.post(
    "/unsubscribe/{token}/", response_model=Envelope[dict[str, Any]], responses=errors(401)
)
async def one_click(token: str, request: Request) -> dict[str, Any]:
    """The one-click POST (``List-Unsubscribe=One-Click``): the preference goes off."""
    try:
        user_id, channel = read_unsubscribe_token(request.app.state.access.secret_key, token)
    except TidingsError as exc:
        raise Unauthorized("this unsubscribe link is not valid") from exc
    await request.app.state.feedback.preference_off(user_id, channel)
    return ok({"user_id": str(user_id), "channel": channel, "subscribed": False}, "unsubscribed")
