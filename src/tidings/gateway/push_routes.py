"""Web Push for browsers: the VAPID public key they subscribe with, and a small demo page
that subscribes this browser with the Push API and registers the subscription as a device
of a user (through the gateway's /api/v1/users/{user_id}/devices/).

Wiring (gateway/app.py): ``app.include_router(create_push_router(settings.vapid_public_key))``.
The page and its scripts are static: the user id and the credential are typed in the page
and only ever sent to this origin's API.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel

from tidings.core.envelope import Envelope, ok
from tidings.core.errors import NotFound
from tidings.core.openapi import errors
from tidings.gateway.pages import render, static

# The scripts are files of their own so the page can forbid inline script.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' https: data:",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class VapidPublicKey(BaseModel):
    vapid_public_key: str


def create_push_router(vapid_public_key: str | None) -> APIRouter:
    router = APIRouter(tags=["push"])
    demo_html = render("push_demo.html")
    demo_js = static("push_demo.js")
    # The service worker: shows what the push worker sends ({title, body, image, link,
    # data}) and opens the link when the notification is clicked.
    service_worker_js = static("push_sw.js")

    @router.get(
        "/api/v1/push/vapid-public-key/",
        response_model=Envelope[VapidPublicKey],
        responses=errors(404),  # Web Push not configured
    )
    async def vapid_key() -> dict[str, Any]:
        """The applicationServerKey for ``PushManager.subscribe`` (base64url)."""
        if not vapid_public_key:
            raise NotFound("Web Push is not configured: set TIDINGS_VAPID_PUBLIC_KEY")
        return ok(VapidPublicKey(vapid_public_key=vapid_public_key), "VAPID public key")

    @router.get("/push-demo/", response_class=HTMLResponse, include_in_schema=False)
    async def demo_page() -> HTMLResponse:
        return HTMLResponse(demo_html, headers=_SECURITY_HEADERS)

    @router.get("/push-demo/demo.js", include_in_schema=False)
    async def demo_script() -> Response:
        return Response(demo_js, media_type="text/javascript", headers=_SECURITY_HEADERS)

    @router.get("/push-demo/sw.js", include_in_schema=False)
    async def service_worker() -> Response:
        # Served from /push-demo/, so its scope is /push-demo/ and nothing wider.
        return Response(service_worker_js, media_type="text/javascript", headers=_SECURITY_HEADERS)

    return router
