"""Outbound webhooks (Standard Webhooks): the tables, the event vocabulary and the secrets
the gateway's endpoints API shares with the worker (``tidings run webhooks``), and the
worker itself. It imports no service; the gateway imports its shared modules."""
