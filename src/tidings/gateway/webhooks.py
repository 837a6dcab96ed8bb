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

import contextlib
import hashlib
import hmac
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tidings.core.envelope import Envelope, ok
from tidings.core.errors import Forbidden, NotFound, Unauthorized
from tidings.core.limits import JsonObject, Storable
from tidings.core.openapi import errors
from tidings.core.status import Status
from tidings.gateway.dependencies import State
from tidings.gateway.state import GatewayState

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


async def _verify(state: GatewayState, sig: MailgunSignature) -> str:
    """Checks the signature and the timestamp, and takes the token (a replay is refused);
    returns the token's key, for the caller to give back if it cannot handle the event."""
    settings = state.settings
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
    token_key = f"webhook-token:{sig.token}"
    if not await state.cache.add(token_key, b"1", 2 * MAX_SKEW_S):
        raise Unauthorized("this webhook token was seen before (a replay)")
    return token_key


# 401: a bad or replayed signature; 403: the webhook is not configured.
@router.post("/mailgun/", response_model=Envelope[dict[str, Any]], responses=errors(401, 403))
async def mailgun(body: MailgunWebhook, state: State) -> dict[str, Any]:
    token = await _verify(state, body.signature)
    try:
        return await _record(body.event_data, state)
    except BaseException:
        # Not handled (a 503 while the users service or the database is away, a 404): the
        # token is given back, so Mailgun's retry of this same event is not taken for a
        # replay and the event is not lost.
        with contextlib.suppress(Exception):
            await state.cache.delete(token)
        raise


async def _record(event: dict[str, Any], state: GatewayState) -> dict[str, Any]:
    kind = str(event.get("event", ""))
    nid = _notification_id(event)
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
