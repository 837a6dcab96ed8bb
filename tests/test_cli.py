"""The tidings command's refusals and its migrate step."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import free_port
from tidings.core.settings import TidingsSettings
from tidings.credentials import CREDENTIALS, VAPID, ensure_credentials, read_kept
from tidings.runner import ConfigurationError
from tidings.supervisor import parse_replicas


def tidings(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_services_that_share_the_bus_refuse_to_run_apart_without_rabbitmq() -> None:
    for service in ("gateway", "email", "push"):
        result = tidings("run", service, TIDINGS_DATABASE_URL="postgresql://x@127.0.0.1/x")
        assert result.returncode == 2
        assert "TIDINGS_AMQP_URL" in result.stderr
    up = tidings("up", TIDINGS_REDIS_URL="redis://127.0.0.1:6379/0")
    assert up.returncode == 2 and "TIDINGS_AMQP_URL" in up.stderr


async def test_migrate_creates_every_service_schema(fresh_pg: str) -> None:
    result = tidings("migrate", TIDINGS_DATABASE_URL=fresh_pg)
    assert result.returncode == 0, result.stderr
    conn = await asyncpg.connect(fresh_pg)
    try:
        tables = {
            (r["table_schema"], r["table_name"])
            for r in await conn.fetch(
                "SELECT table_schema, table_name FROM information_schema.tables"
                " WHERE table_schema IN ('users', 'templates', 'gateway', 'email', 'push')"
            )
        }
    finally:
        await conn.close()
    assert {
        ("users", "users"),
        ("templates", "template_versions"),
        ("gateway", "notifications"),
        ("gateway", "outbox"),
        ("gateway", "dead_letters"),
        ("email", "deliveries"),
        ("push", "deliveries"),
    } <= tables
    again = tidings("migrate", TIDINGS_DATABASE_URL=fresh_pg)
    assert again.returncode == 0, again.stderr  # idempotent
    # One line each time, whatever the number of revisions.
    schemas = "schemas users, templates, gateway, email, push: "
    assert re.fullmatch(schemas + r"[1-9]\d* migration\(s\) applied\n", result.stdout), result
    assert again.stdout == schemas + "up to date\n" and not again.stderr, again


def test_up_refuses_replicas_it_cannot_run() -> None:
    amqp = {"TIDINGS_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/"}
    for bad in ("email", "email=0", "mail=2", "gateway=two", "push=33"):
        with pytest.raises(ConfigurationError, match="SERVICE=N"):
            parse_replicas(bad)
    assert parse_replicas("email=2, gateway=3") == {
        "gateway": 3,
        "users": 1,
        "templates": 1,
        "email": 2,
        "push": 1,
        "webhooks": 1,
    }
    result = tidings("up", "--replicas", "mail=2", **amqp)
    assert result.returncode == 2 and "SERVICE=N" in result.stderr, result.stderr
    # Replicas of users or templates are found through discovery, which needs Redis.
    no_redis = tidings("up", "--replicas", "users=2", **amqp)
    assert no_redis.returncode == 2 and "TIDINGS_REDIS_URL" in no_redis.stderr
    # Replica k listens on its port + 100k: never on another's.
    redis = {"TIDINGS_REDIS_URL": "redis://127.0.0.1:6379/0"}
    clash = tidings("up", "--replicas", "users=2", **amqp, **redis, TIDINGS_TEMPLATES_PORT="8101")
    assert clash.returncode == 2 and "users replica 1's" in clash.stderr, clash.stderr
    embedded = tidings("up", "--replicas", "email=2")
    assert embedded.returncode == 2 and "real infrastructure" in embedded.stderr


def test_up_reset_is_for_the_embedded_default() -> None:
    result = tidings("up", "--reset", TIDINGS_AMQP_URL="amqp://guest:guest@127.0.0.1:5672/")
    assert result.returncode == 2 and "--reset is for the embedded default" in result.stderr


def test_send_and_status_say_in_one_line_what_is_missing(tmp_path: Path) -> None:
    no_key = tidings("status", "x", TIDINGS_DATA_DIR=str(tmp_path))
    assert no_key.returncode == 1 and no_key.stderr.startswith("tidings: no admin key"), no_key
    port = free_port()
    down = tidings("status", "x", "--key", "k", "--url", f"http://127.0.0.1:{port}")
    assert down.returncode == 1
    assert down.stderr.startswith(f"tidings: the gateway at http://127.0.0.1:{port} did not")
    bad = tidings("send", "nobody", "welcome", "name=Ada", "--key", "k")
    assert bad.returncode == 1 and "neither a user id nor an email address" in bad.stderr
    vars_bad = tidings("send", "a@example.com", "welcome", "novalue", "--key", "k")
    assert vars_bad.returncode == 1 and "neither KEY=VALUE nor a JSON object" in vars_bad.stderr


@pytest.mark.parametrize("kept", ["{not json", "[1, 2]", "a directory"])
def test_unreadable_kept_credentials_are_one_line_not_a_traceback(
    tmp_path: Path, kept: str
) -> None:
    path = tmp_path / "credentials.json"
    if kept == "a directory":
        path.mkdir()
    else:
        path.write_text(kept)
    for command in (
        ["up"],
        ["send", "a@example.com", "welcome", "name=Ada"],
        ["status", "x"],
        ["doctor"],
    ):
        result = tidings(*command, TIDINGS_DATA_DIR=str(tmp_path))
        assert result.returncode == 2, (command, result)
        assert "Traceback" not in result.stderr, (command, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (command, result.stderr)
        assert lines[0].startswith(f"tidings: {path} unreadable: "), (command, lines)
        assert lines[0].endswith("; `tidings up --reset` starts afresh"), (command, lines)


def test_kept_credentials_yield_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (*CREDENTIALS, *VAPID):
        monkeypatch.delenv(f"TIDINGS_{name.upper()}", raising=False)
    settings = TidingsSettings(data_dir=tmp_path)
    made = ensure_credentials(settings, keep=True)
    assert made.admin_key_origin == "made"
    kept = read_kept(settings)
    assert set(kept) == {*CREDENTIALS, *VAPID} and kept["admin_api_key"] == made.admin_key
    for name in (*CREDENTIALS, *VAPID):  # as a new process would start
        monkeypatch.delenv(f"TIDINGS_{name.upper()}")
    again = ensure_credentials(TidingsSettings(data_dir=tmp_path), keep=True)
    assert (again.admin_key, again.admin_key_origin) == (made.admin_key, "kept")
    for name in (*CREDENTIALS, *VAPID):
        monkeypatch.delenv(f"TIDINGS_{name.upper()}")
    monkeypatch.setenv("TIDINGS_ADMIN_API_KEY", "the operator's own")
    mine = ensure_credentials(TidingsSettings(data_dir=tmp_path), keep=True)
    assert (mine.admin_key, mine.admin_key_origin) == ("the operator's own", "environment")
    assert read_kept(settings) == kept, "a key from the environment is not kept"
