'use strict';
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
