"""push worker: consumes push.queue, renders push notifications and sends them."""
