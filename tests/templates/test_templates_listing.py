from __future__ import annotations

import asyncio

import httpx

from tests.helpers import app_client, assert_envelope
from tests.templates.support import (
    API,
    email_body,
    migrated_settings,
    post_ok,
    push_body,
    unique_code,
)
from tidings.templates.app import create_app


async def test_versions_pagination_meta_is_exact(templates: httpx.AsyncClient) -> None:
    code = unique_code()
    for n in range(5):
        await post_ok(templates, email_body(code, subject=f"v{n + 1}"))

    async def page(number: int, **params: str) -> dict:
        query: dict[str, str | int] = {"page": number, "limit": 2, **params}
        response = await templates.get(f"{API}/{code}/versions/", params=query)
        assert response.status_code == 200, response.text
        body: dict = response.json()
        assert_envelope(body, success=True)
        return body

    second = await page(2)
    assert [d["version"] for d in second["data"]] == [3, 2]
    assert second["meta"] == dict(
        total=5, limit=2, page=2, total_pages=3, has_next=True, has_previous=True
    )
    last = await page(3)
    assert [d["version"] for d in last["data"]] == [1]
    assert last["meta"]["has_next"] is False and last["meta"]["has_previous"] is True
    first = await page(1)
    assert first["meta"]["has_previous"] is False and first["meta"]["has_next"] is True

    # A filter that matches nothing on a known code: an empty page, not a 404.
    empty = await page(1, channel="push")
    assert empty["data"] == []
    assert empty["meta"] == dict(
        total=0, limit=2, page=1, total_pages=0, has_next=False, has_previous=False
    )


async def test_concurrent_posts_get_distinct_versions(templates: httpx.AsyncClient) -> None:
    code = unique_code()
    responses = await asyncio.gather(
        *(templates.post(f"{API}/", json=email_body(code, subject=f"s{n}")) for n in range(10))
    )
    assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
    assert sorted(r.json()["data"]["version"] for r in responses) == list(range(1, 11))
    active = (await templates.get(f"{API}/{code}/")).json()["data"]
    assert active["version"] == 10


async def test_list_active_versions(fresh_pg: str) -> None:
    # A database of its own: the list spans every template, so exact totals need isolation.
    async with app_client(create_app(await migrated_settings(fresh_pg))) as client:
        for body in (
            email_body("alpha"),
            email_body("alpha", subject="second"),
            email_body("alpha", language="fr"),
            push_body("alpha"),
            email_body("beta"),
        ):
            await post_ok(client, body)
        response = await client.get(f"{API}/", params={"limit": 3})
        assert response.status_code == 200, response.text
        body = response.json()
        assert_envelope(body, success=True)
        keys = [(d["code"], d["channel"], d["language"], d["version"]) for d in body["data"]]
        assert keys == [
            ("alpha", "email", "en", 2),
            ("alpha", "email", "fr", 1),
            ("alpha", "push", "en", 1),
        ]
        assert body["meta"] == dict(
            total=4, limit=3, page=1, total_pages=2, has_next=True, has_previous=False
        )
        rest = (await client.get(f"{API}/", params={"limit": 3, "page": 2})).json()["data"]
        assert [(d["code"], d["version"]) for d in rest] == [("beta", 1)]
