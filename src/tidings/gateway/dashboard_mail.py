"""The email as sent (item 3 of issue 19): filled in below."""

from __future__ import annotations

from tidings.gateway.dashboard_base import dashboard_router

router = dashboard_router("")
