"""Quiet hours through the whole path, with the clock injected into the acceptance and the
relay (no test waits for a night): a send inside the window is scheduled, with the reason in
its history, and delivered when the window ends in the user's local time; the priority lane
goes at once; the DST nights of Europe/Berlin end at 07:00 local."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from tests.prefs.conftest import history_details
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.system import System
from tidings.core.db import utcnow

URL = "/api/v1/notifications/"


class Clock:
    def __init__(self) -> None:
        self.now: dt.datetime | None = None

    def __call__(self) -> dt.datetime:
        return self.now or utcnow()


@pytest.fixture
def clock(system: System) -> Iterator[Clock]:
    """One clock for the gateway's acceptance and its relay; real time again afterwards."""
    state = system.apps["gateway"].state.gateway
    fake = Clock()
    state.acceptance.rules.clock = fake
    state.relay.clock = fake
    try:
        yield fake
    finally:
        state.acceptance.rules.clock = utcnow
        state.relay.clock = utcnow


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


async def arrival_of(system: System, request_id: str) -> None:
    while True:
        got = str((await system.smtp.next(timeout_s=30)).message["X-Request-ID"])
        if got == request_id:
            return


async def quiet_user(system: System, zone: str) -> dict[str, Any]:
    return await create_user(
        system.gateway, time_zone=zone, quiet_hours={"start": "22:00", "end": "07:00"}
    )


async def still_scheduled(system: System, nid: str) -> None:
    """The relay's poll, run now at the clock's time, leaves it waiting."""
    await system.apps["gateway"].state.gateway.relay.flush()
    found = (await system.gateway.get(f"{URL}{nid}/")).json()["data"]
    assert found["status"] == "scheduled", found


async def test_tokyo_23_00_waits_until_07_00_and_priority_9_goes_at_once(
    system: System, clock: Clock
) -> None:
    gw = system.gateway
    user = await quiet_user(system, "Asia/Tokyo")
    template = await create_template(gw)
    clock.now = utc(2027, 1, 14, 14)  # 23:00 in Tokyo
    night = notification(user["user_id"], template["code"], priority=5)
    answer = await gw.post(URL, json=night)
    assert answer.status_code == 202, answer.text
    nid = answer.json()["data"]["notification_id"]
    found = await wait_for_status(gw, nid, "scheduled")
    [reason] = history_details(found)
    assert "quiet hours (22:00-07:00 Asia/Tokyo)" in reason
    assert "2027-01-15 07:00 local" in reason and "2027-01-14T22:00:00Z" in reason

    urgent = notification(user["user_id"], template["code"], priority=9)
    sent = await gw.post(URL, json=urgent)
    assert sent.json()["data"]["status"] == "pending"
    await arrival_of(system, urgent["request_id"])
    await wait_for_status(gw, sent.json()["data"]["notification_id"], "delivered")

    clock.now = utc(2027, 1, 14, 21, 59)  # 06:59 in Tokyo: not yet
    await still_scheduled(system, nid)
    clock.now = utc(2027, 1, 14, 22)  # 07:00 in Tokyo
    system.apps["gateway"].state.gateway.relay.wake()
    await arrival_of(system, night["request_id"])
    done = await wait_for_status(gw, nid, "delivered")
    # (In the history's order by time, the fake clock's rows sort after the real ones.)
    assert {"scheduled", "queued", "delivered"} <= {h["status"] for h in done["history"]}


@pytest.mark.parametrize(
    ("evening", "summer_seven", "seven"),
    [
        # 2026-03-29, clocks go forward: 23:00 CET is 22:00Z, 07:00 CEST is 05:00Z.
        (utc(2026, 3, 28, 22), None, utc(2026, 3, 29, 5)),
        # 2026-10-25, clocks go back: 23:00 CEST is 21:00Z; 05:00Z would be 07:00 at the
        # summer offset but is 06:00 CET: still quiet; 07:00 CET is 06:00Z.
        (utc(2026, 10, 24, 21), utc(2026, 10, 25, 5), utc(2026, 10, 25, 6)),
    ],
    ids=["berlin-2026-03-29", "berlin-2026-10-25"],
)
async def test_berlin_dst_nights_end_at_07_00_local(
    system: System,
    clock: Clock,
    evening: dt.datetime,
    summer_seven: dt.datetime | None,
    seven: dt.datetime,
) -> None:
    gw = system.gateway
    user = await quiet_user(system, "Europe/Berlin")
    template = await create_template(gw)
    clock.now = evening
    night = notification(user["user_id"], template["code"])
    nid = (await gw.post(URL, json=night)).json()["data"]["notification_id"]
    [reason] = history_details(await wait_for_status(gw, nid, "scheduled"))
    assert f"{seven:%Y-%m-%dT%H:%M:%SZ}" in reason and "07:00 local" in reason
    if summer_seven is not None:
        clock.now = summer_seven
        await still_scheduled(system, nid)
    clock.now = seven - dt.timedelta(minutes=1)
    await still_scheduled(system, nid)
    clock.now = seven
    system.apps["gateway"].state.gateway.relay.wake()
    await arrival_of(system, night["request_id"])
    await wait_for_status(gw, nid, "delivered")
