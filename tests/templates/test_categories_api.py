"""Categories in the templates service: made by admins, named by templates, carried with the
template the gateway reads (its key and whether it is critical)."""

from __future__ import annotations

import uuid

import httpx

from tests.helpers import assert_envelope
from tests.templates.support import API, email_body, post_ok, unique_code

CATEGORIES = f"{API}/categories/"


async def new_category(templates: httpx.AsyncClient, **fields: object) -> dict:
    body = {"key": f"cat-{uuid.uuid4().hex[:8]}", "description": "News", **fields}
    answer = await templates.post(CATEGORIES, json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json()["data"])


async def test_create_list_change_delete(templates: httpx.AsyncClient) -> None:
    made = await new_category(templates, critical=True)
    assert made["critical"] is True and made["description"] == "News"
    again = await templates.post(CATEGORIES, json={"key": made["key"], "description": "x"})
    assert again.status_code == 409
    assert_envelope(again.json(), success=False)
    listed = await templates.get(CATEGORIES, params={"limit": 100})
    assert made["key"] in [c["key"] for c in listed.json()["data"]]
    assert listed.json()["meta"]["total"] >= 1
    changed = await templates.patch(f"{CATEGORIES}{made['key']}/", json={"critical": False})
    assert changed.status_code == 200 and changed.json()["data"]["critical"] is False
    gone = await templates.delete(f"{CATEGORIES}{made['key']}/")
    assert gone.status_code == 200, gone.text
    assert (await templates.get(f"{CATEGORIES}{made['key']}/")).status_code == 404


async def test_a_template_carries_its_category_and_flag(templates: httpx.AsyncClient) -> None:
    security = await new_category(templates, critical=True)
    code = unique_code()
    made = await post_ok(templates, email_body(code, category=security["key"]))
    assert made["category"] == security["key"] and made["critical"] is True
    got = (await templates.get(f"{API}/{code}/")).json()["data"]
    assert got["category"] == security["key"] and got["critical"] is True
    # In use: it cannot be deleted.
    used = await templates.delete(f"{CATEGORIES}{security['key']}/")
    assert used.status_code == 409 and code in used.json()["error"]
    # Without a category: none, not critical (as before categories).
    plain = await post_ok(templates, email_body(unique_code()))
    assert plain["category"] is None and plain["critical"] is False


async def test_bad_input_is_422_and_stores_nothing(templates: httpx.AsyncClient) -> None:
    code = unique_code()
    unknown = await templates.post(API + "/", json=email_body(code, category="no-such-kind"))
    assert unknown.status_code == 422 and "category" in unknown.json()["error"]
    assert (await templates.get(f"{API}/{code}/")).status_code == 404
    reserved = await templates.post(API + "/", json=email_body("categories"))
    assert reserved.status_code == 422 and "reserved" in reserved.json()["error"]
    for body in ({"key": "Bad Key", "description": "x"}, {"key": "ok", "description": ""}):
        refused = await templates.post(CATEGORIES, json=body)
        assert refused.status_code == 422, refused.text
        assert_envelope(refused.json(), success=False)
