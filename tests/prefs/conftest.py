"""The five services in process (tests/gateway/conftest.py's ``system``), and the categories
every preference test uses."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.credentials import ADMIN
from tests.gateway.conftest import system, system_overrides  # noqa: F401  (the fixtures)
from tests.scenario import create_template


async def create_category(
    gw: httpx.AsyncClient, prefix: str, *, critical: bool = False
) -> dict[str, Any]:
    key = f"{prefix}-{uuid.uuid4().hex[:6]}"
    answer = await gw.post(
        "/api/v1/templates/categories/",
        json={"key": key, "description": f"{prefix.title()} news", "critical": critical},
        headers=ADMIN,
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json()["data"])


async def categorised_template(gw: httpx.AsyncClient, category: str) -> dict[str, Any]:
    template = await create_template(gw, category=category)
    assert template["category"] == category
    return template


def history_details(found: dict[str, Any]) -> list[str]:
    return [str(h["detail"]) for h in found["history"]]
