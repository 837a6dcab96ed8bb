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

# The scripts are files of their own so the page can forbid inline script.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' https: data:",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

DEMO_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Tidings: Web Push demo</title>
</head>
<body>
<h1>Tidings Web Push demo</h1>
<p>Subscribes this browser to push notifications and registers the subscription as a device
of the user below. Then send that user a <code>push</code> notification.</p>
<form id="form">
  <p><label>user_id <input id="user_id" size="40" required></label></p>
  <p><label>credential (the user's access token or an API key)
    <input id="credential" size="40" type="password"></label></p>
  <p><button type="submit">Subscribe and register</button>
     <button type="button" id="unsubscribe">Unsubscribe</button></p>
</form>
<pre id="log"></pre>
<script src="/push-demo/demo.js"></script>
</body>
</html>
"""

DEMO_JS = """'use strict';
const log = (line) => { document.getElementById('log').textContent += line + '\\n'; };

// The VAPID key is base64url; the Push API takes the raw bytes.
function keyBytes(b64url) {
  const padded = b64url + '='.repeat((4 - b64url.length % 4) % 4);
  const b64 = padded.replace(/-/g, '+').replace(/_/g, '/');
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

async function subscribe(event) {
  event.preventDefault();
  if (!('serviceWorker' in navigator) || !('PushManager' in window)) {
    log('this browser has no Push API (or the page is not on https or localhost)');
    return;
  }
  const userId = document.getElementById('user_id').value.trim();
  const credential = document.getElementById('credential').value.trim();
  const answer = await (await fetch('/api/v1/push/vapid-public-key/')).json();
  if (!answer.success) { log('no VAPID key: ' + answer.error); return; }
  const registration = await navigator.serviceWorker.register('/push-demo/sw.js');
  await navigator.serviceWorker.ready;
  if (await Notification.requestPermission() !== 'granted') {
    log('notifications not allowed');
    return;
  }
  const subscription = await registration.pushManager.subscribe({
    userVisibleOnly: true, applicationServerKey: keyBytes(answer.data.vapid_public_key),
  });
  const json = subscription.toJSON();
  const headers = {'content-type': 'application/json'};
  if (credential) headers.authorization = 'Bearer ' + credential;
  const registered = await fetch('/api/v1/users/' + encodeURIComponent(userId) + '/devices/', {
    method: 'POST', headers,
    body: JSON.stringify({
      kind: 'webpush', subscription: {endpoint: json.endpoint, keys: json.keys},
    }),
  });
  const body = await registered.json();
  const said = body.success ? body.message + ': ' + body.data.device_id : body.error;
  log(registered.status + ' ' + said);
}

async function unsubscribe() {
  const registration = await navigator.serviceWorker.getRegistration('/push-demo/');
  const subscription = registration && await registration.pushManager.getSubscription();
  if (!subscription) { log('not subscribed'); return; }
  await subscription.unsubscribe();
  log('unsubscribed');
}

const report = (err) => log(String(err));
document.getElementById('form').addEventListener('submit', (e) => subscribe(e).catch(report));
document.getElementById('unsubscribe').addEventListener('click', () => unsubscribe().catch(report));
"""

# The service worker: shows what the push worker sends ({title, body, image, link, data})
# and opens the link when the notification is clicked.
SERVICE_WORKER_JS = """'use strict';
self.addEventListener('push', (event) => {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch (e) {
    message = {body: event.data.text()};
  }
  const data = {link: message.link || null, ...(message.data || {})};
  const options = {body: message.body || '', data};
  if (message.image) { options.image = message.image; }
  event.waitUntil(self.registration.showNotification(message.title || 'Tidings', options));
});
self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const link = event.notification.data && event.notification.data.link;
  if (link) { event.waitUntil(clients.openWindow(link)); }
});
"""


class VapidPublicKey(BaseModel):
    vapid_public_key: str


def create_push_router(vapid_public_key: str | None) -> APIRouter:
    router = APIRouter(tags=["push"])

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
        return HTMLResponse(DEMO_HTML, headers=_SECURITY_HEADERS)

    @router.get("/push-demo/demo.js", include_in_schema=False)
    async def demo_script() -> Response:
        return Response(DEMO_JS, media_type="text/javascript", headers=_SECURITY_HEADERS)

    @router.get("/push-demo/sw.js", include_in_schema=False)
    async def service_worker() -> Response:
        # Served from /push-demo/, so its scope is /push-demo/ and nothing wider.
        return Response(SERVICE_WORKER_JS, media_type="text/javascript", headers=_SECURITY_HEADERS)

    return router
