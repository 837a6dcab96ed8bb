"""How the push worker delivers one notification: template, render, the user's live
devices, one send per device (concurrently), per-device results. Retries, dead letters,
de-duplication and reports are core's DeliveryFlow; this decides what one attempt means.

- A device that accepted the notification (in any attempt) is never sent it again.
- A gone device (Web Push 404/410, FCM UNREGISTERED) is marked dead at the users service,
  and the attempt's report names it (the gateway makes it a ``device.removed`` webhook event).
- Devices still worth retrying (transient, provider-auth, an open breaker) make the attempt
  a retry or a wait; when some device has accepted it, as core's ``Unfinished``: once core
  gives up (attempts or the wait spent), the notification is delivered.
- delivered: at least one device accepted; failed: none did (with every device's reason,
  earlier attempts' included); skipped: the user has no live device and no attempt reached
  one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from tidings.core.breaker import BreakerOpen
from tidings.core.errors import (
    DeliveryError,
    DependencyUnavailable,
    NoRecipient,
    NotFound,
    PermanentError,
    ProviderAuthError,
    RecipientInvalid,
    TransientError,
)
from tidings.core.flow import Unfinished, devices_removed, renew_lease
from tidings.core.lookups import TemplateDirectory
from tidings.core.messages import NotificationMessage
from tidings.push_worker.devices_client import DeviceDirectory
from tidings.push_worker.senders import Device, PushContent, PushSender, urgency_for
from tidings.push_worker.store import DeviceResults

log = logging.getLogger(__name__)
Retryable = DeliveryError | DependencyUnavailable
Outcome = str | Retryable


def content_for(n: NotificationMessage, rendered: dict[str, Any], ttl_s: int) -> PushContent:
    """The rendered template as a push. ``data``: the notification's ids and the request's
    ``variables.meta``, as strings (FCM's data is string to string)."""
    meta = n.variables.get("meta") or {}
    data = {
        str(k): v if isinstance(v, str) else orjson.dumps(v).decode()
        for k, v in (meta.items() if isinstance(meta, dict) else ())
    }
    data.update(notification_id=n.notification_id, request_id=n.request_id)
    return PushContent(
        notification_id=n.notification_id,
        title=rendered["title"] or "",
        body=rendered["body"] or "",
        image=rendered.get("image_url") or None,
        # The template's link, or else the request's own (variables.link is required).
        link=rendered.get("link") or n.variables.get("link") or None,
        data=data,
        ttl_s=ttl_s,
        urgency=urgency_for(n.priority),
    )


class PushDelivery:
    def __init__(
        self,
        templates: TemplateDirectory,
        devices: DeviceDirectory,
        results: DeviceResults,
        senders: dict[str, PushSender],
        *,
        ttl_s: int,
    ) -> None:
        self.templates = templates
        self.devices = devices
        self.results = results
        self.senders = senders
        self.ttl_s = ttl_s

    async def __call__(self, n: NotificationMessage) -> str:
        rendered = await self.templates.render("push", n)
        content = content_for(n, rendered, self.ttl_s)
        user_id = n.recipient.user_id
        try:
            devices = await self.devices.live(user_id)
        except NotFound as exc:
            raise NoRecipient(f"the user {user_id} no longer exists") from exc
        done = await self.results.finished(n.notification_id)
        accepted: list[str] = []
        # (what happened, whether it was a dead device)
        failed: list[tuple[str, bool]] = []
        for r in done.values():
            line = f"{r.kind} device {r.device_id}: {r.detail}"
            if r.state == "accepted":
                accepted.append(line)
            else:
                failed.append((line, r.state == "dead"))
        if not devices and not done:
            # Skipped only when no attempt reached a device: a device that failed in an
            # earlier attempt and is gone now (dead, or deleted meanwhile) makes it failed,
            # with that device's reason, below.
            raise NoRecipient("the user has no live push device")
        todo = [d for d in devices if d.device_id not in done]
        if todo:
            await renew_lease()  # the lease runs from the sends, not from the look-ups
        outcomes = await asyncio.gather(*(self._one(n, d, content) for d in todo))
        # Every report of this attempt names the devices found gone (device.removed webhooks).
        gone = {r.device_id: r.detail or "" for r in done.values() if r.state == "dead"}
        for device, outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, RecipientInvalid):
                gone[device.device_id] = outcome.message
        devices_removed(gone)
        retry: list[tuple[Device, Retryable]] = []
        for device, outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, str):
                accepted.append(f"{device.label}: {outcome}")
            elif isinstance(outcome, RecipientInvalid | PermanentError):
                line = f"{device.label}: {outcome.kind}: {outcome.message}"
                failed.append((line, isinstance(outcome, RecipientInvalid)))
            else:
                retry.append((device, outcome))
        not_delivered = [f for f, _ in failed] + [f"{d.label}: {e.message}" for d, e in retry]
        summary = f"{len(accepted)} device(s) accepted: " + "; ".join(accepted)
        if not_delivered:
            summary += "; not delivered to: " + "; ".join(not_delivered)
        if retry:
            error = self._retry_error(retry, accepted)
            # Some devices took it: core retries the rest, and delivers it when it gives up.
            raise Unfinished(error, summary) if accepted else error
        if not accepted:
            reasons = "no device accepted the notification: " + "; ".join(f for f, _ in failed)
            if failed and all(dead for _, dead in failed):
                raise RecipientInvalid(reasons)
            raise PermanentError(reasons)
        return summary

    async def _one(self, n: NotificationMessage, device: Device, content: PushContent) -> Outcome:
        """Send to one device and record what it made of it; never raises a DeliveryError."""
        sender = self.senders.get(device.kind)
        try:
            if sender is None:
                raise PermanentError(f"no sender for {device.kind} devices")
            reply = await sender.send(device, content)
        except (DeliveryError, DependencyUnavailable) as exc:
            state = "retrying"
            if isinstance(exc, RecipientInvalid):
                state = "dead"
            elif isinstance(exc, PermanentError):
                state = "failed"
            await self.results.record(
                n.notification_id, device.device_id, device.kind, state, exc.message
            )
            if isinstance(exc, RecipientInvalid):
                await self.devices.mark_dead(n.recipient.user_id, device.device_id, exc.message)
            return exc
        await self.results.record(
            n.notification_id, device.device_id, device.kind, "accepted", reply
        )
        return reply

    @staticmethod
    def _retry_error(retry: list[tuple[Device, Retryable]], accepted: list[str]) -> Retryable:
        """One error for the attempt. Provider-auth comes first (core alerts, and holds the
        notification without spending attempts); then a device's transient failure spends
        an attempt (the longest Retry-After wins); only when every remaining device waits on
        an open breaker or an unreachable service does the notification wait without
        spending one."""
        reasons = "; ".join(f"{d.label}: {e.message}" for d, e in retry)
        if accepted:
            reasons += f" (already accepted by {len(accepted)} device(s))"
        errors = [e for _, e in retry]
        if any(isinstance(e, ProviderAuthError) for e in errors):
            return ProviderAuthError(reasons)
        transient = [e for e in errors if isinstance(e, TransientError)]
        if transient:
            waits = [e.retry_after_s for e in transient if e.retry_after_s]
            return TransientError(reasons, retry_after_s=max(waits) if waits else None)
        opened = [e for e in errors if isinstance(e, BreakerOpen)]
        if opened:
            waiting = BreakerOpen("push", max(e.retry_after_s for e in opened))
            waiting.message = reasons
            return waiting
        return DependencyUnavailable(reasons)
