"""The email as sent, as Mailpit shows it: the HTML part in a sandboxed frame (no scripts,
no forms, nothing loaded from elsewhere: the page's CSP and the frame's own), the text part,
the headers and the raw source. The copy is the email worker's (email_worker.sent), read
with the service token; it is there for ``TIDINGS_SENT_MAIL_KEEP_S`` after the send, on the
embedded default's captured mail and on production's sent mail alike."""

from __future__ import annotations

import base64
import email
import email.policy
import uuid
from email.message import EmailMessage
from typing import Any

import httpx
from fastapi.responses import Response

from tidings.gateway.dashboard_base import Session, _page, dashboard_router
from tidings.gateway.dependencies import State
from tidings.gateway.state import GatewayState

router = dashboard_router()

# The frame's own policy (CSP embedded enforcement) beside the page's: inline styles and
# inline images only.
FRAME_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


async def sent_copy(state: GatewayState, notification_id: uuid.UUID) -> dict[str, Any] | str:
    """The worker's copy, or why there is none (through the gateway's one client of the
    email worker: gateway.state)."""
    try:
        answer = await state.email_worker_http.get(f"/api/v1/email/sent/{notification_id}/")
    except httpx.HTTPError as exc:
        return f"The email worker did not answer: {type(exc).__name__}."
    body = (
        answer.json()
        if answer.headers.get("content-type", "").startswith("application/json")
        else {}
    )
    if answer.status_code != 200:
        return str(body.get("error") or f"The email worker answered {answer.status_code}.")
    data: dict[str, Any] = body["data"]
    return data


def _part(message: EmailMessage, kind: str) -> str | None:
    part = message.get_body(preferencelist=(kind,))
    if part is None:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def dissect(raw: bytes) -> dict[str, Any]:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return {
        "headers": [(k, str(v)) for k, v in message.items()],
        "subject": str(message.get("Subject", "")),
        "html": _part(message, "html"),
        "text": _part(message, "plain"),
        "source": raw.decode("utf-8", "replace"),
    }


@router.get("/notifications/{notification_id}/email")
async def sent_email(state: State, token: Session, notification_id: uuid.UUID) -> Response:
    copy = await sent_copy(state, notification_id)
    if isinstance(copy, str):
        return _page("error.html", token, 404, message=copy, nav="notifications")
    shown = dissect(base64.b64decode(copy["raw"]))
    return _page(
        "email.html",
        token,
        nav="notifications",
        nid=str(notification_id),
        copy=copy,
        m=shown,
        frame_csp=FRAME_CSP,
    )
