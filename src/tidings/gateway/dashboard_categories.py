"""The dashboard's categories page: what the templates service has (a read-only list; they
are made with ``tidings categories`` or the API). The route is registered in dashboard.py."""

from __future__ import annotations

import logging
from typing import Any

from tidings.core.errors import DependencyUnavailable
from tidings.gateway.state import GatewayState

log = logging.getLogger(__name__)


async def categories_context(state: GatewayState) -> dict[str, Any]:
    """The page's rows, or why there are none (the templates service unreachable)."""
    try:
        rows: list[dict[str, Any]] = await state.templates_client.get(
            "/api/v1/templates/categories/", params={"limit": "100"}
        )
    except DependencyUnavailable as exc:
        log.warning("dashboard: categories unavailable: %s", exc)
        return {"categories": [], "error": f"The templates service is unavailable: {exc}"}
    return {"categories": rows, "error": None}
