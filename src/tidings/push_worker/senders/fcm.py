"""FCM HTTP v1: ``POST {base}/v1/projects/{project_id}/messages:send`` with an OAuth2
access token (see fcm_auth). One message per device token; errors are read from the
google.rpc.Status body, with FCM's ``errorCode`` in its details."""

from __future__ import annotations

from typing import Any

import httpx

from tidings.core.breaker import CircuitBreaker
from tidings.core.errors import (
    PermanentError,
    ProviderAuthError,
    RecipientInvalid,
    TransientError,
)
from tidings.push_worker.senders import (
    CallLimits,
    Device,
    PushContent,
    bounded_post,
    retry_after_s,
    trips_breaker,
)
from tidings.push_worker.senders.fcm_auth import AccessTokens

NOT_CONFIGURED = (
    "FCM is not configured: set TIDINGS_FCM_SERVICE_ACCOUNT_FILE "
    "(or TIDINGS_FCM_SERVICE_ACCOUNT_JSON)"
)
_RECIPIENT_GONE = {"UNREGISTERED", "SENDER_ID_MISMATCH"}
_TRANSIENT = {"UNAVAILABLE", "INTERNAL", "QUOTA_EXCEEDED"}


def message_for(token: str, content: PushContent, click_action: str | None) -> dict[str, Any]:
    notification = {"title": content.title, "body": content.body}
    android_notification: dict[str, str] = {}
    if content.image:
        notification["image"] = content.image
        android_notification["image"] = content.image
    if click_action:
        android_notification["click_action"] = click_action
    message: dict[str, Any] = {
        "token": token,
        "notification": notification,
        # The link travels in data too: an app opens it when the user taps.
        "data": {**content.data, **({"link": content.link} if content.link else {})},
        "android": {
            "priority": "high" if content.urgency == "high" else "normal",
            "ttl": f"{content.ttl_s}s",
            "notification": android_notification,
        },
        "webpush": {"headers": {"TTL": str(content.ttl_s), "Urgency": content.urgency}},
    }
    if content.link and content.link.startswith("https://"):  # FCM takes https links only
        message["webpush"]["fcm_options"] = {"link": content.link}
    return {"message": message}


def _about_token(error: dict[str, Any]) -> bool:
    """INVALID_ARGUMENT is about the device only when it names the token."""
    for detail in error.get("details") or []:
        for violation in detail.get("fieldViolations") or []:
            if violation.get("field") == "message.token":
                return True
    return "registration token" in str(error.get("message", "")).lower()


def classify(answer: httpx.Response) -> str:
    if answer.status_code == 200:
        try:
            return f"fcm {answer.json().get('name', '')}".strip()
        except ValueError:
            return "fcm 200"
    try:
        error = answer.json().get("error") or {}
    except ValueError:
        error = {}
    codes: set[str] = {
        str(d["errorCode"])
        for d in error.get("details") or []
        if isinstance(d, dict) and d.get("errorCode")
    }
    status = error.get("status") or ""
    said = f"FCM answered {answer.status_code} {status} {'/'.join(sorted(codes))}: " + str(
        error.get("message", answer.text[:200])
    )
    wait = retry_after_s(answer.headers.get("retry-after"))
    if codes & _RECIPIENT_GONE:
        raise RecipientInvalid(said)
    if "INVALID_ARGUMENT" in codes | {status}:
        if _about_token(error):
            raise RecipientInvalid(said)
        raise PermanentError(said)
    if codes & _TRANSIENT or status in _TRANSIENT:
        raise TransientError(said, retry_after_s=wait)
    if answer.status_code == 429 or answer.status_code >= 500:
        raise TransientError(said, retry_after_s=wait)
    if answer.status_code in (401, 403) or "THIRD_PARTY_AUTH_ERROR" in codes:
        raise ProviderAuthError(said)
    raise PermanentError(said)


class FcmSender:
    def __init__(
        self,
        http: httpx.AsyncClient,
        breaker: CircuitBreaker,
        *,
        tokens: AccessTokens | None,
        project_id: str | None,
        base_url: str,
        click_action: str | None = None,
        limits: CallLimits | None = None,
    ) -> None:
        self.http = http
        self.breaker = breaker
        self.tokens = tokens
        self.project_id = project_id
        self.url = f"{base_url.rstrip('/')}/v1/projects/{project_id}/messages:send"
        self.click_action = click_action
        self.limits = limits or CallLimits()

    async def send(self, device: Device, content: PushContent) -> str:
        if self.tokens is None or not self.project_id:
            raise PermanentError(NOT_CONFIGURED)
        if not device.token:
            raise PermanentError(f"{device.label} has no token")
        body = message_for(device.token, content, self.click_action)
        async with self.breaker.guard(trips_breaker):
            answer = await self._post(body)
            if answer.status_code == 401:  # revoked or expired early: one fresh token
                answer = await self._post(body, fresh=True)
        return classify(answer)

    async def _post(self, body: dict[str, Any], *, fresh: bool = False) -> httpx.Response:
        assert self.tokens is not None
        token = await self.tokens.get()
        if fresh:
            self.tokens.invalidate(token)
            token = await self.tokens.get()
        try:
            return await bounded_post(
                self.http,
                self.url,
                self.limits,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            raise TransientError(f"FCM unreachable: {exc!r}", connection_level=True) from exc

    async def close(self) -> None:
        await self.http.aclose()
