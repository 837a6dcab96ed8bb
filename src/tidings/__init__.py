"""Tidings: a distributed notification system."""
