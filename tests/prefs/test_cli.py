"""``tidings categories`` and ``tidings preferences`` against the running services."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from tests.credentials import ADMIN_KEY
from tests.scenario import create_user
from tests.system import System
from tidings.cli import main


async def tidings(system: System, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The command's output; in a thread: it blocks, and the services run on this loop."""
    target = ["--url", str(system.gateway.base_url).rstrip("/"), "--key", ADMIN_KEY]
    capsys.readouterr()
    assert await asyncio.to_thread(main, [*argv, *target]) == 0
    return capsys.readouterr().out


async def test_categories_and_a_users_preferences_from_the_shell(
    system: System, capsys: pytest.CaptureFixture[str]
) -> None:
    key = f"news-{uuid.uuid4().hex[:6]}"
    made = await tidings(system, capsys, "categories", "create", key, "--description", "News")
    assert key in made
    listed = await tidings(system, capsys, "categories", "list")
    assert key in listed
    await tidings(system, capsys, "categories", "update", key, "--critical", "no")

    user = await create_user(system.gateway)
    out = await tidings(
        system,
        capsys,
        "preferences",
        "set",
        user["user_id"],
        "--category",
        f"{key}=email:off",
        "--time-zone",
        "Asia/Tokyo",
        "--quiet",
        "22:00-07:00",
        "--days",
        "fri,sat",
    )
    shown = json.loads(await tidings(system, capsys, "preferences", "show", user["user_id"]))
    assert json.loads(out) == shown
    assert shown["preferences"]["categories"] == {key: {"email": False}}
    assert shown["time_zone"] == "Asia/Tokyo"
    assert shown["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00", "days": ["fri", "sat"]}
    await tidings(system, capsys, "preferences", "set", user["user_id"], "--quiet", "none")
    cleared = json.loads(await tidings(system, capsys, "preferences", "show", user["user_id"]))
    assert cleared["quiet_hours"] is None


def test_a_malformed_category_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="KEY=email"):
        main(["preferences", "set", str(uuid.uuid4()), "--category", "marketing-off"])
