"""One log line per notification, at its final state: accepting one that goes logs nothing of
its own (its status change is counted), its delivery logs its line; a skipped one, final at
once, is logged when accepted."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from tests.helpers import wait_for_condition
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System

_LOGGER = "tidings.gateway.transitions"


def _lines(caplog: pytest.LogCaptureFixture, nid: str) -> list[str]:
    return [
        r.getMessage().split()[-1]
        for r in caplog.records
        if r.name == _LOGGER and getattr(r, "notification_id", None) == nid
    ]


def _pending_count() -> float:
    value = REGISTRY.get_sample_value(
        "tidings_notifications_total", {"channel": "email", "status": "pending"}
    )
    return value or 0.0


async def test_a_notification_is_logged_once_at_its_final_state(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    user = await create_user(system.gateway)
    template = await create_template(system.gateway)
    before = _pending_count()
    with caplog.at_level(logging.INFO, logger=_LOGGER):
        answer = await system.gateway.post(
            "/api/v1/notifications/", json=notification(user["user_id"], template["code"])
        )
        assert answer.status_code == 202, answer.text
        nid = answer.json()["data"]["notification_id"]
        await wait_for_status(system.gateway, nid, "delivered")

        async def logged() -> bool:
            return _lines(caplog, nid) == ["delivered"]

        await wait_for_condition(logged, timeout_s=10, what="the delivered line")
        assert _pending_count() == before + 1, "the acceptance is still counted"
        await system.smtp.next()

        off = await create_user(system.gateway, preferences={"email": False, "push": False})
        skipped = await system.gateway.post(
            "/api/v1/notifications/", json=notification(off["user_id"], template["code"])
        )
        assert skipped.json()["data"]["status"] == "skipped", skipped.text
        assert _lines(caplog, skipped.json()["data"]["notification_id"]) == ["skipped"]
