"""Provider event webhooks: Mailgun's signed event webhook.

Mailgun signs each event: HMAC-SHA256 over ``timestamp + token`` with the webhook signing key.
A forged signature, a timestamp more than five minutes off, or a token seen before (a
replay) is refused. Events: delivered → the history; failed (temporary) → the history;
failed (permanent) → failed and bounced; complained → the history. What a bounce or a
complaint suppresses, and the email preference a complaint turns off, is gateway.feedback's
one rule, the same as for the bounce receiver's reports: only the notification's own address
is ever suppressed, whatever ``recipient`` Mailgun names.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tidings.core.envelope import Envelope, ok
from tidings.core.errors import Forbidden, NotFound, Unauthorized
from tidings.core.limits import JsonObject, Storable
from tidings.core.openapi import errors
from tidings.core.status import Status

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
MAX_SKEW_S = 300


class MailgunSignature(BaseModel):
    # Shapes, so what reaches the HMAC is ASCII: a lone surrogate could not be encoded, and
    # compare_digest refuses non-ASCII strings (each a 500, found by the fuzzer).
    timestamp: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")]
    token: Annotated[str, StringConstraints(min_length=10, max_length=200), Storable]
    signature: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{1,128}$")]


class MailgunWebhook(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    signature: MailgunSignature
    event_data: JsonObject = Field(alias="event-data")


def _notification_id(event: dict[str, Any]) -> uuid.UUID:
    message_id = str(event.get("message", {}).get("headers", {}).get("message-id", ""))
    try:
        return uuid.UUID(message_id.strip("<>").split("@", 1)[0])
    except ValueError as exc:
        raise NotFound(f"no Tidings notification has the Message-ID {message_id!r}") from exc


async def _verify(request: Request, sig: MailgunSignature) -> None:
    settings = request.app.state.gateway.settings
    if settings.mailgun_webhook_signing_key is None:
        raise Forbidden(
            "the Mailgun webhook is not configured (TIDINGS_MAILGUN_WEBHOOK_SIGNING_KEY)"
        )
    key = settings.mailgun_webhook_signing_key.get_secret_value().encode()
    expected = hmac.new(key, (sig.timestamp + sig.token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig.signature):
        raise Unauthorized("the webhook signature does not verify")
    if not sig.timestamp.isdigit() or abs(time.time() - int(sig.timestamp)) > MAX_SKEW_S:
        raise Unauthorized("the webhook timestamp is too old or in the future")
    if not await request.app.state.gateway.cache.add(
        f"webhook-token:{sig.token}", b"1", 2 * MAX_SKEW_S
    ):
        raise Unauthorized("this webhook token was seen before (a replay)")


# 401: a bad or replayed signature; 403: the webhook is not configured.
@router.post("/mailgun/", response_model=Envelope[dict[str, Any]], responses=errors(401, 403))
async def mailgun(body: MailgunWebhook, request: Request) -> dict[str, Any]:
    await _verify(request, body.signature)
    event = body.event_data
    kind = str(event.get("event", ""))
    nid = _notification_id(event)
    state = request.app.state.gateway
    notifications = state.transitions
    status_info = event.get("delivery-status") or {}
    text = status_info.get("message") or status_info.get("description") or ""
    reply = f"{status_info.get('code', '')} {text}".strip()
    # Whatever address Mailgun names, gateway.feedback's rule decides what is suppressed.
    recipient = str(event.get("recipient", "")) or None
    if kind == "delivered":
        await notifications.record_status(
            nid, "email", Status.DELIVERED, detail=f"provider: delivered {reply}"
        )
    elif kind == "failed" and event.get("severity") == "permanent":
        reason = f"bounced: {reply or event.get('reason', 'permanent failure')}"
        await state.feedback.apply(nid, "bounce", recipient, reason)
        await notifications.record_status(nid, "email", Status.FAILED, error=reason, bounced=True)
    elif kind == "failed":
        await notifications.record_status(
            nid, "email", Status.PENDING, detail=f"provider: deferred {reply}"
        )
    elif kind == "complained":
        await state.feedback.apply(nid, "complaint", recipient, "complaint")
        await notifications.record_status(
            nid, "email", Status.DELIVERED, detail="provider: complaint"
        )
    else:
        return ok({"event": kind, "recorded": False}, f"event {kind!r} ignored")
    return ok({"event": kind, "recorded": True, "notification_id": str(nid)}, "event recorded")
