'use strict';
const log = (line) => { document.getElementById('log').textContent += line + '\n'; };

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
