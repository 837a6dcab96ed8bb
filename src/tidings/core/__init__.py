"""Shared infrastructure: settings, errors, envelope, logging, bus, store, cache, rendering.

Every service imports from here; no service imports another service.
"""
