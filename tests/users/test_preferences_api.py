"""Preferences per category and channel, time zone and quiet hours at the users service, on
its own: no templates service runs here, so a category can be turned on but not off (which
asks the templates service for the critical ones: 503, nothing changed). Turning off, and a
critical category refused: tests/prefs, where every service runs."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import assert_envelope
from tests.users.test_users_api import new_user, users  # noqa: F401  (the fixture)


async def test_spec_body_answers_the_spec_shape(users: httpx.AsyncClient) -> None:  # noqa: F811
    created = (await users.post("/api/v1/users/", json=new_user())).json()["data"]
    assert created["preferences"] == {"email": True, "push": False}
    assert created["time_zone"] is None and created["quiet_hours"] is None


async def test_categories_merge_per_category_and_channel(
    users: httpx.AsyncClient,  # noqa: F811
) -> None:
    body = new_user(
        preferences={"email": True, "push": True, "categories": {"marketing": {"email": True}}},
        time_zone="Asia/Tokyo",
        quiet_hours={"start": "22:00", "end": "07:00", "days": ["fri", "sat"]},
    )
    created = await users.post("/api/v1/users/", json=body)
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert data["preferences"]["categories"] == {"marketing": {"email": True}}
    assert data["time_zone"] == "Asia/Tokyo"
    assert data["quiet_hours"] == {"start": "22:00:00", "end": "07:00:00", "days": ["fri", "sat"]}
    path = f"/api/v1/users/{data['user_id']}/"
    patched = await users.patch(
        path,
        json={
            "preferences": {
                "push": False,
                "categories": {"marketing": {"push": True}, "product": {"email": True}},
            }
        },
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["preferences"] == {
        "email": True,
        "push": False,
        "categories": {"marketing": {"email": True, "push": True}, "product": {"email": True}},
    }
    # null: back to the channel's own preference; an empty category is dropped.
    back = await users.patch(
        path, json={"preferences": {"categories": {"product": {"email": None}}}}
    )
    assert "product" not in back.json()["data"]["preferences"]["categories"]
    cleared = await users.patch(path, json={"quiet_hours": None, "time_zone": None})
    assert cleared.json()["data"]["quiet_hours"] is None
    assert cleared.json()["data"]["time_zone"] is None


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"time_zone": "Mars/Olympus_Mons"}, "time_zone"),
        ({"time_zone": "../../etc/passwd"}, "time_zone"),
        ({"quiet_hours": {"start": "22:00", "end": "22:00"}}, "quiet_hours"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "22:00", "end": "07:00", "days": ["someday"]}}, "days"),
        ({"preferences": {"categories": {"Not A Key": {"email": False}}}}, "categories"),
        ({"preferences": {"categories": {"x": {"sms": False}}}}, "sms"),
    ],
)
async def test_bad_input_is_422_and_changes_nothing(
    users: httpx.AsyncClient,  # noqa: F811
    change: dict,
    fragment: str,
) -> None:
    created = (await users.post("/api/v1/users/", json=new_user())).json()["data"]
    path = f"/api/v1/users/{created['user_id']}/"
    refused = await users.patch(path, json=change)
    assert refused.status_code == 422, refused.text
    assert_envelope(refused.json(), success=False)
    assert fragment in refused.json()["error"]
    after = (await users.get(path)).json()["data"]
    assert after == created


async def test_turning_off_without_the_templates_service_is_503_and_changes_nothing(
    users: httpx.AsyncClient,  # noqa: F811
) -> None:
    created = (await users.post("/api/v1/users/", json=new_user())).json()["data"]
    path = f"/api/v1/users/{created['user_id']}/"
    refused = await users.patch(
        path, json={"name": "X", "preferences": {"categories": {"marketing": {"email": False}}}}
    )
    assert refused.status_code == 503, refused.text
    assert_envelope(refused.json(), success=False)
    assert (await users.get(path)).json()["data"] == created
