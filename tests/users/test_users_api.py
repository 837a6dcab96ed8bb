from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.credentials import SETTINGS
from tests.helpers import app_client, assert_envelope
from tidings.core.migrations import migrate
from tidings.users.app import create_app
from tidings.users.settings import UsersSettings


@pytest.fixture
async def users(pg_database: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = UsersSettings(database_url=pg_database, **SETTINGS)
    await asyncio.to_thread(migrate, "tidings.users", settings.store_url, "users")
    async with app_client(create_app(settings)) as client:
        yield client


def new_user(**overrides: object) -> dict:
    body = {
        "name": "Ada Lovelace",
        "email": f"ada-{uuid.uuid4().hex[:8]}@example.com",
        "push_token": None,
        "preferences": {"email": True, "push": False},
        "password": "correct horse battery",
    }
    body.update(overrides)
    return body


async def test_create_get_patch(users: httpx.AsyncClient) -> None:
    body = new_user()
    created = await users.post("/api/v1/users/", json=body)
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert_envelope(created.json(), success=True)
    assert "password" not in data and "password_hash" not in data
    assert data["email"] == body["email"] and data["preferences"] == body["preferences"]
    assert data["language"] == "en"

    got = await users.get(f"/api/v1/users/{data['user_id']}/")
    assert got.status_code == 200 and got.json()["data"] == data

    patched = await users.patch(
        f"/api/v1/users/{data['user_id']}/",
        json={"name": "Ada", "push_token": "tok-1", "preferences": {"push": True}},
    )
    assert patched.status_code == 200, patched.text
    out = patched.json()["data"]
    assert out["name"] == "Ada" and out["push_token"] == "tok-1"
    assert out["preferences"] == {"email": True, "push": True}


async def test_duplicate_email_is_conflict_case_insensitive(users: httpx.AsyncClient) -> None:
    body = new_user()
    assert (await users.post("/api/v1/users/", json=body)).status_code == 201
    again = await users.post("/api/v1/users/", json={**body, "email": body["email"].upper()})
    assert again.status_code == 409
    assert_envelope(again.json(), success=False)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"preferences": {"email": True}}, "preferences.push"),
        ({"name": ""}, "name"),
        ({"language": "English!"}, "language"),
    ],
)
async def test_bad_input_is_422_and_stores_nothing(
    users: httpx.AsyncClient, overrides: dict, fragment: str
) -> None:
    body = new_user(**overrides)
    response = await users.post("/api/v1/users/", json=body)
    assert response.status_code == 422
    assert_envelope(response.json(), success=False)
    assert fragment in response.json()["error"]
    if "@" in str(body["email"]):
        # nothing stored: the same body with the field fixed is still accepted
        fixed = new_user(email=body["email"])
        assert (await users.post("/api/v1/users/", json=fixed)).status_code == 201


async def test_unknown_and_malformed_ids(users: httpx.AsyncClient) -> None:
    missing = await users.get(f"/api/v1/users/{uuid.uuid4()}/")
    assert missing.status_code == 404
    assert_envelope(missing.json(), success=False)
    bad = await users.get("/api/v1/users/not-a-uuid/")
    assert bad.status_code == 422
    assert_envelope(bad.json(), success=False)


async def test_password_is_hashed_with_argon2(users: httpx.AsyncClient, pg_database: str) -> None:
    import asyncpg

    body = new_user()
    created = (await users.post("/api/v1/users/", json=body)).json()["data"]
    conn = await asyncpg.connect(pg_database)
    try:
        stored = await conn.fetchval(
            "SELECT password_hash FROM users.users WHERE id = $1", uuid.UUID(created["user_id"])
        )
    finally:
        await conn.close()
    assert stored.startswith("$argon2id$") and body["password"] not in stored
