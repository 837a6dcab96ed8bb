"""``tidings topics …`` and ``tidings broadcasts …`` against a running gateway."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import pytest

from tests.broadcasts.support import seed_users, wait_progress
from tests.credentials import ADMIN_KEY
from tests.scenario import create_template
from tests.system import System
from tidings.cli import main


async def _cli(system: System, capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    url = f"http://127.0.0.1:{system.ports['gateway']}"
    # In a thread: the command is synchronous, and the gateway answers on this loop.
    code = await asyncio.to_thread(main, [*argv, "--url", url, "--key", ADMIN_KEY])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


async def test_topics_and_a_broadcast_from_a_shell(
    system: System, pg_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = f"cli-{uuid.uuid4().hex[:6]}"
    users = await seed_users(pg_database, 30, tag)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(str(u) for u in users))
    assert "topic " + tag in await _cli(system, capsys, "topics", "create", tag, "CLI news")
    out = await _cli(system, capsys, "topics", "subscribe", tag, "--file", str(ids))
    assert out.strip() == "30 of 30 added"
    again = await _cli(system, capsys, "topics", "subscribe", tag, str(users[0]))
    assert again.strip() == "0 of 1 added"
    template = await create_template(system.gateway)
    sent = await _cli(
        system, capsys, "broadcasts", "send", tag, template["code"], "--request-id", tag
    )
    found = re.match(r"([0-9a-f-]{36})  broadcast accepted", sent)
    assert found, sent
    await wait_progress(
        system.gateway, found[1], lambda p: p["delivered"] == 30, timeout_s=60, what="all"
    )
    shown = await _cli(system, capsys, "broadcasts", "show", found[1])
    assert "finished" in shown and "delivered 30" in shown
    listed = await _cli(system, capsys, "topics", "list", "--user", str(users[1]))
    assert tag in listed
