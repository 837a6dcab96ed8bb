"""A newcomer's first run: ``tidings up`` in a terminal (a pseudo-terminal here), a restart
of the embedded default that keeps what it made, ``--reset``, and ``tidings send``,
``tidings status`` and ``tidings doctor`` against the running stack."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_tidings_up import Tidings
from tests.helpers import free_port
from tests.push.support import add_webpush, push_template, push_user, send_push
from tests.push.webpush_peer import WebPushReceiver
from tests.scenario import create_template, wait_for_status

pytestmark = pytest.mark.e2e


class Terminal:
    """``tidings up`` with stdin, stdout and stderr on a pseudo-terminal; what it writes is
    collected as it comes, and ``expect`` waits for a text to appear (woken by each read)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.output = ""
        self.read = asyncio.Event()  # set by each read
        self.closed = False
        self.proc: asyncio.subprocess.Process | None = None
        self.master = -1

    async def start(self, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tidings",
            "up",
            *args,
            env=self.env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        asyncio.get_running_loop().add_reader(self.master, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every writer has gone
            chunk = b""
        loop = asyncio.get_running_loop()
        if not chunk:
            loop.remove_reader(self.master)
            self.closed = True
        self.output += chunk.decode(errors="replace").replace("\r\n", "\n")
        self.read.set()

    async def _until(self, done: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not done():
                self.read.clear()
                await self.read.wait()

    async def expect(self, text: str, timeout_s: float = 60) -> None:
        await self._until(lambda: text in self.output or self.closed, timeout_s)
        assert text in self.output, f"{text!r} never came:\n{self.output[-3000:]}"

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = await asyncio.wait_for(self.proc.wait(), 30)
        await self._until(lambda: self.closed, 10)
        os.close(self.master)
        return code


async def test_up_in_a_terminal_prints_a_banner_and_plain_log_lines(tmp_path: Path) -> None:
    tidings = Tidings(tmp_path, given_credentials=False)
    terminal = Terminal(tidings.env)
    await terminal.start()
    try:
        await terminal.expect("Stop it with Ctrl-C")
        key = tidings.kept()["admin_api_key"]
        gateway = f"http://127.0.0.1:{tidings.ports['gateway']}"
        banner = terminal.output[terminal.output.index("Tidings is up") :]
        for shown in (
            f"Gateway    {gateway}\n",
            f"API docs   {gateway}/docs\n",
            f"Dashboard  {gateway}/dashboard/\n",
            f"Admin key  {key}  (made now, kept in {tidings.data_dir / 'credentials.json'}",
            f"captured on 127.0.0.1:{tidings.env['TIDINGS_SMTP_CAPTURE_PORT']}",
            "`tidings mail`",
            "Ctrl-C",
        ):
            assert shown in banner, f"{shown!r} not in the banner:\n{banner}"
        answer = await tidings.client.get("/health", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200
        await terminal.expect("GET /health 200")
    finally:
        code = await terminal.stop()
        await tidings.client.aclose()
    assert code == 0, terminal.output[-3000:]
    lines = [line for line in terminal.output.splitlines() if line.strip()]
    json_lines = [line for line in lines if line.lstrip().startswith("{")]
    assert not json_lines, json_lines[:5]
    # The migrations in one line; none of alembic's own (one per revision).
    assert len([line for line in lines if "migration(s) applied" in line]) == 1, lines
    assert not [line for line in lines if "alembic" in line or "Running upgrade" in line]
    assert re.search(
        r"^\d\d:\d\d:\d\d INFO +tidings [\w.]+: GET /health 200 \[[0-9a-f]+\]$",
        terminal.output,
        re.M,
    )


async def _log_in(gateway: httpx.AsyncClient, user_id: str) -> dict[str, str]:
    """The user's access and refresh tokens (logged in with create_user's password)."""
    email = (await gateway.get(f"/api/v1/users/{user_id}/")).json()["data"]["email"]
    login = await gateway.post(
        "/api/v1/auth/login/", json={"email": email, "password": "a long enough password"}
    )
    assert login.status_code == 200, login.text
    return dict(login.json()["data"])


async def _tokens_work(
    gateway: httpx.AsyncClient, user_id: str, tokens: dict[str, str]
) -> tuple[int, int]:
    """The answers to reading the user's profile with its access token, and to a refresh."""
    own = await gateway.get(
        f"/api/v1/users/{user_id}/",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    refreshed = await gateway.post(
        "/api/v1/auth/refresh/",
        json={"refresh_token": tokens["refresh_token"]},
        headers={"Authorization": ""},
    )
    return own.status_code, refreshed.status_code


async def test_a_restart_keeps_the_admin_key_and_web_push_devices(tmp_path: Path) -> None:
    """Restarted, the embedded default runs with the admin key, secret key and VAPID keys it
    made the first time: the old key is still good, a user's access and refresh tokens
    issued before the restart still work after it, and a device subscribed before the
    restart gets a push after it. ``--reset`` starts afresh with a new key (and the old
    tokens are refused)."""
    env = {"TIDINGS_WEBPUSH_ALLOW_INSECURE": "true"}
    first = Tidings(tmp_path, given_credentials=False, **env)
    await first.start()
    kept = first.kept()
    assert stat.S_IMODE((first.data_dir / "credentials.json").stat().st_mode) == 0o600
    assert set(kept) == {
        "admin_api_key",
        "secret_key",
        "service_token",
        "vapid_private_key",
        "vapid_public_key",
    }
    admin = {"Authorization": f"Bearer {kept['admin_api_key']}"}
    first.client.headers.update(admin)
    public = (await first.client.get("/api/v1/push/vapid-public-key/")).json()["data"]
    assert public["vapid_public_key"] == kept["vapid_public_key"]
    receiver = await WebPushReceiver(kept["vapid_public_key"]).start()
    try:
        user_id = await push_user(first.client)
        subscription = receiver.subscribe()
        await add_webpush(first.client, user_id, subscription)
        code = await push_template(first.client)
        tokens = await _log_in(first.client, user_id)
        assert await first.stop() == 0, first.log.read_text()[-3000:]

        again = Tidings(tmp_path, given_credentials=False, **env)
        await again.start()
        try:
            assert again.kept() == kept
            again.client.headers.update(admin)
            assert (await again.client.get(f"/api/v1/users/{user_id}/")).status_code == 200
            assert await _tokens_work(again.client, user_id, tokens) == (200, 200)
            nid = await send_push(again.client, user_id, code)
            await receiver.wait_for(lambda: receiver.received_by(subscription))
            assert not receiver.problems, receiver.problems
            assert receiver.received_by(subscription)[0].message["title"] == "Hello Grace"
            await wait_for_status(again.client, nid, "delivered")
        finally:
            assert await again.stop() == 0, again.log.read_text()[-3000:]
    finally:
        await receiver.close()

    fresh = Tidings(tmp_path, given_credentials=False, **env)
    await fresh.start("--reset")
    try:
        assert fresh.kept()["admin_api_key"] != kept["admin_api_key"]
        assert fresh.kept()["vapid_public_key"] != kept["vapid_public_key"]
        old = await fresh.client.get(f"/api/v1/users/{user_id}/", headers=admin)
        assert old.status_code == 401, old.text
        assert await _tokens_work(fresh.client, user_id, tokens) == (401, 401)
        fresh.client.headers["Authorization"] = f"Bearer {fresh.kept()['admin_api_key']}"
        assert (await fresh.client.get(f"/api/v1/users/{user_id}/")).status_code == 404
    finally:
        assert await fresh.stop() == 0, fresh.log.read_text()[-3000:]


def tidings_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(tidings_cli, *args, env=env)


async def test_send_and_status_through_the_embedded_default(tmp_path: Path) -> None:
    tidings = Tidings(tmp_path, given_credentials=False)
    await tidings.start()
    try:
        tidings.client.headers["Authorization"] = f"Bearer {tidings.kept()['admin_api_key']}"
        template = await create_template(tidings.client)
        # To an address: a user is made for it; the key is the one the embedded default kept.
        sent = await cli(
            "send",
            "ada@example.com",
            template["code"],
            "name=Ada",
            '{"link": "https://example.com/start"}',
            env=tidings.env,
        )
        assert sent.returncode == 0, sent.stderr
        created, accepted = sent.stdout.splitlines()
        assert created.startswith("user ") and created.endswith(" created for ada@example.com")
        nid = accepted.split()[0]
        await wait_for_status(tidings.client, nid, "delivered")
        status = await cli("status", nid, env=tidings.env)
        assert status.returncode == 0, status.stderr
        head, *history = status.stdout.splitlines()
        assert head.startswith(f"{nid}  email  delivered  to {created.split()[1]}"), head
        assert any(" delivered " in f"{line} " for line in history), status.stdout
        mail = await cli("mail", env=tidings.env)
        assert "Ada <ada@example.com>  Welcome, Ada!" in mail.stdout, mail.stdout

        # To a user id, with --url and --key given instead.
        user_id = created.split()[1]
        given = {k: v for k, v in tidings.env.items() if k != "TIDINGS_GATEWAY_PORT"}
        url = f"http://127.0.0.1:{tidings.ports['gateway']}"
        key = tidings.kept()["admin_api_key"]
        by_id = await cli(
            "send",
            user_id,
            template["code"],
            "name=Ada",
            "link=https://example.com/x",
            "--url",
            url,
            "--key",
            key,
            env=given,
        )
        assert by_id.returncode == 0, by_id.stderr
        assert (
            await cli("status", by_id.stdout.split()[0], "--url", url, "--key", key, env=given)
        ).returncode == 0

        wrong = await cli("status", nid, "--key", "not-the-key", env=tidings.env)
        assert wrong.returncode == 1 and wrong.stderr.startswith("tidings: 401 "), wrong.stderr
        again = await cli("send", "ada@example.com", template["code"], "name=Ada", env=tidings.env)
        assert again.returncode == 1 and "send to that user's id instead" in again.stderr
    finally:
        assert await tidings.stop() == 0, tidings.log.read_text()[-3000:]


def _lines(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """``tidings doctor``'s lines by what they check: "ok" or "FAIL" and the rest."""
    return {
        line.split()[1]: line
        for line in result.stdout.splitlines()
        if line.startswith(("ok ", "FAIL "))
    }


async def test_doctor_on_the_real_infrastructure(
    fresh_pg: str, amqp_vhost: str, redis_url: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env |= {
        "TIDINGS_DATABASE_URL": fresh_pg,
        "TIDINGS_AMQP_URL": amqp_vhost,
        "TIDINGS_REDIS_URL": redis_url,
        "TIDINGS_DATA_DIR": str(tmp_path / "data"),
    }
    env |= {
        f"TIDINGS_{s.upper()}_PORT": str(free_port())
        for s in ("gateway", "users", "templates", "email", "push")
    }
    good = await cli("doctor", env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    lines = _lines(good)
    for what in ("configuration", "PostgreSQL", "RabbitMQ", "Redis"):
        assert lines[what].startswith("ok "), good.stdout
    assert "not running" in lines["services"]
    assert good.stdout.rstrip().endswith("all good")

    closed = free_port()
    bad = await cli("doctor", env=env | {"TIDINGS_REDIS_URL": f"redis://127.0.0.1:{closed}/0"})
    assert bad.returncode == 1, bad.stdout
    failed = [line for line in bad.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1 and failed[0].split()[1] == "Redis", bad.stdout
    assert f"127.0.0.1:{closed}" in failed[0] and "refused" in failed[0].lower(), failed[0]
    assert _lines(bad)["PostgreSQL"].startswith("ok ")

    no_pg = await cli(
        "doctor", env=env | {"TIDINGS_DATABASE_URL": f"postgresql://x@127.0.0.1:{closed}/x"}
    )
    assert no_pg.returncode == 1
    assert [line.split()[1] for line in no_pg.stdout.splitlines() if line.startswith("FAIL")] == [
        "PostgreSQL"
    ]


async def test_doctor_checks_the_running_services(tmp_path: Path) -> None:
    tidings = Tidings(tmp_path, given_credentials=False)
    await tidings.start()
    try:
        result = await cli("doctor", env=tidings.env)
        assert result.returncode == 0, result.stdout
        lines = _lines(result)
        for service in ("gateway", "users", "templates", "email", "push"):
            assert lines[service].startswith("ok ") and "/health: ok" in lines[service]
    finally:
        assert await tidings.stop() == 0
    broken = await cli("doctor", env=tidings.env | {"TIDINGS_GATEWAY_PORT": "eighty"})
    assert broken.returncode == 1
    assert broken.stdout.startswith("FAIL  configuration TIDINGS_GATEWAY_PORT: "), broken.stdout
