"""``tidings webhooks``: register, list, disable and enable, messages, replay and rotate
through the gateway's API, as an operator would from a shell."""

from __future__ import annotations

import asyncio
import contextlib
import io

from tests.credentials import ADMIN_KEY
from tests.system import System
from tests.webhooks.conftest import WorkerHandle
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import delete_all, send
from tidings.cli import main


async def tidings(system: System, *argv: str) -> tuple[int, str]:
    url = str(system.gateway.base_url)
    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out):
            return main([*argv, "--url", url, "--key", ADMIN_KEY])

    code = await asyncio.to_thread(run)
    return code, out.getvalue()


async def test_the_command_line_manages_endpoints(
    system: System, worker: WorkerHandle, receiver: Receiver
) -> None:
    await delete_all(system.gateway)
    code, out = await tidings(
        system, "webhooks", "create", receiver.url, "--events", "notification.delivered"
    )
    assert code == 0, out
    secret = out.split("secret (shown this once): ")[1].split()[0]
    receiver.secrets.append(secret)
    endpoint_id = out.split()[0]
    code, out = await tidings(system, "webhooks", "list")
    assert endpoint_id in out and "1 endpoint(s)" in out
    await send(system.gateway, 1)
    await receiver.wait_for(lambda: len(receiver.accepted) == 1, 30, "delivered")
    code, out = await tidings(system, "webhooks", "messages", endpoint_id)
    assert code == 0 and "notification.delivered" in out and "200 in" in out, out
    webhook_id = out.split()[0]
    code, out = await tidings(system, "webhooks", "replay", endpoint_id, "--webhook-id", webhook_id)
    assert code == 0 and "1 message(s) replayed" in out, out
    await receiver.wait_for(lambda: receiver.requests[webhook_id] == 2, 30, "replayed")
    code, out = await tidings(system, "webhooks", "disable", endpoint_id)
    assert "disabled (disabled by its owner)" in out, out
    code, out = await tidings(system, "webhooks", "enable", endpoint_id)
    assert "enabled" in out and "disabled" not in out, out
    code, out = await tidings(system, "webhooks", "rotate", endpoint_id)
    assert code == 0 and "whsec_" in out, out
    code, out = await tidings(system, "webhooks", "delete", endpoint_id)
    assert code == 0 and "deleted" in out, out
