from __future__ import annotations

import uuid

import httpx
import pytest

from tests.helpers import assert_envelope
from tests.templates.support import (
    API,
    email_body,
    post_ok,
    push_body,
    unique_code,
)


async def test_create_email_and_push(templates: httpx.AsyncClient) -> None:
    code = unique_code()
    email = await post_ok(templates, email_body(code))
    assert email["version"] == 1 and email["language"] == "en" and email["channel"] == "email"
    assert email["subject"] == "Hi {{ name }}" and email["title"] is None
    assert email["image_url"] is None and email["link"] is None
    uuid.UUID(email["template_id"])

    push = await post_ok(templates, push_body(code, language="fr", image_url="https://x/a.png"))
    assert push["version"] == 1 and push["channel"] == "push" and push["language"] == "fr"
    assert push["title"] == "Hi {{ name }}" and push["image_url"] == "https://x/a.png"
    assert push["subject"] is None and push["text_body"] is None

    got = await templates.get(f"{API}/{code}/", params={"channel": "push", "language": "fr"})
    assert got.status_code == 200 and got.json()["data"] == push


async def test_versions_increment_and_history_is_kept(templates: httpx.AsyncClient) -> None:
    code = unique_code()
    made = [await post_ok(templates, email_body(code, subject=f"v{n}")) for n in (1, 2, 3)]
    assert [m["version"] for m in made] == [1, 2, 3]
    assert len({m["template_id"] for m in made}) == 3

    active = (await templates.get(f"{API}/{code}/")).json()
    assert_envelope(active, success=True)
    assert active["data"] == made[-1]

    history = (await templates.get(f"{API}/{code}/versions/")).json()
    assert_envelope(history, success=True)
    assert history["data"] == made[::-1]

    # Numbering is per code, channel and language.
    assert (await post_ok(templates, push_body(code)))["version"] == 1
    assert (await post_ok(templates, email_body(code, language="de")))["version"] == 1


async def test_language_fallback(templates: httpx.AsyncClient) -> None:
    code = unique_code()
    await post_ok(templates, email_body(code, subject="english"))
    await post_ok(templates, email_body(code, language="fr", subject="français"))

    async def served(language: str) -> tuple[str, str]:
        response = await templates.get(f"{API}/{code}/", params={"language": language})
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        return data["language"], data["subject"]

    assert await served("fr") == ("fr", "français")
    assert await served("de") == ("en", "english")
    assert await served("fr-CA") == ("fr", "français")

    rendered = await templates.post(
        f"{API}/{code}/render/", json={"language": "es", "variables": {"name": "A", "link": "L"}}
    )
    assert rendered.status_code == 200, rendered.text
    assert rendered.json()["data"]["language"] == "en"


async def test_render_escapes_html_in_body_only(templates: httpx.AsyncClient) -> None:
    code = unique_code()
    await post_ok(templates, email_body(code))
    await post_ok(templates, push_body(code))
    variables = {"name": "<b>Ada</b>", "link": "https://example.com/?a=1&b=2"}

    response = await templates.post(f"{API}/{code}/render/", json={"variables": variables})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_envelope(body, success=True)
    data = body["data"]
    assert (data["code"], data["channel"], data["language"], data["version"]) == (
        code,
        "email",
        "en",
        1,
    )
    rendered = data["rendered"]
    assert rendered["subject"] == "Hi <b>Ada</b>"
    assert rendered["text_body"] == "Hello <b>Ada</b>: https://example.com/?a=1&b=2"
    assert "Hello &lt;b&gt;Ada&lt;/b&gt;" in rendered["body"] and "<b>" not in rendered["body"]
    assert "https://example.com/?a=1&amp;b=2" in rendered["body"]

    push = await templates.post(
        f"{API}/{code}/render/", json={"channel": "push", "variables": variables}
    )
    assert push.status_code == 200, push.text
    assert push.json()["data"]["rendered"] == dict(
        title="Hi <b>Ada</b>",
        body="Hello <b>Ada</b>",
        image_url=None,
        link="https://example.com/?a=1&b=2",
    )


async def test_render_missing_variable_names_it(templates: httpx.AsyncClient) -> None:
    code = unique_code()
    await post_ok(templates, email_body(code))
    response = await templates.post(f"{API}/{code}/render/", json={"variables": {"name": "Ada"}})
    assert response.status_code == 422
    body = response.json()
    assert_envelope(body, success=False)
    assert "'link'" in body["error"]


@pytest.mark.parametrize(
    ("make", "field", "source", "fragment"),
    [
        (email_body, "body", "{{ ''.__class__.__mro__ }}", "internal attribute"),
        (email_body, "subject", "{{ name.__globals__ }}", "__globals__"),
        (email_body, "text_body", "{{ name['__class__'] }}", "__class__"),
        (push_body, "link", "{{ link._x }}", "_x"),
        (email_body, "body", "<p>{{ name </p>", "syntax error"),
        (push_body, "title", "{% if name %}open", "syntax error"),
    ],
)
async def test_unsafe_or_broken_template_is_refused_and_not_stored(
    templates: httpx.AsyncClient, make: object, field: str, source: str, fragment: str
) -> None:
    code = unique_code()
    assert callable(make)
    response = await templates.post(f"{API}/", json=make(code, **{field: source}))
    assert response.status_code == 422, response.text
    body = response.json()
    assert_envelope(body, success=False)
    assert body["error"].startswith(f"{field}: ") and fragment in body["error"]
    assert (await templates.get(f"{API}/{code}/versions/")).status_code == 404


async def test_unknown_code_is_404(templates: httpx.AsyncClient) -> None:
    code = unique_code("missing")
    for response in (
        await templates.get(f"{API}/{code}/"),
        await templates.get(f"{API}/{code}/versions/"),
        await templates.post(f"{API}/{code}/render/", json={"variables": {}}),
    ):
        assert response.status_code == 404, response.text
        assert_envelope(response.json(), success=False)
        assert code in response.json()["error"]

    # Known code, but not for that channel: 404 too.
    await post_ok(templates, email_body(code))
    push = await templates.get(f"{API}/{code}/", params={"channel": "push"})
    assert push.status_code == 404
    assert_envelope(push.json(), success=False)


@pytest.mark.parametrize(
    ("method", "path", "payload", "fragment"),
    [
        ("POST", "/", {"channel": "sms"}, "channel"),
        ("POST", "/", {"code": "Bad Code"}, "code"),
        ("POST", "/", {"code": "x" * 101}, "code"),
        ("POST", "/", {"language": "English"}, "language"),
        ("POST", "/", {"title": "push only"}, "title"),
        ("POST", "/", {"subject": ""}, "subject"),
        ("GET", "/welcome/?channel=sms", None, "channel"),
        ("GET", "/welcome/?language=xx_YY", None, "language"),
        ("GET", "/Not%20A%20Code/", None, "code"),
        ("GET", "/welcome/versions/?limit=0", None, "limit"),
        ("GET", "/welcome/versions/?limit=101", None, "limit"),
        ("GET", "/?page=0", None, "page"),
        ("POST", "/welcome/render/", {"channel": "sms"}, "channel"),
        ("POST", "/welcome/render/", {"variables": [1]}, "variables"),
    ],
)
async def test_bad_input_is_422(
    templates: httpx.AsyncClient, method: str, path: str, payload: dict | None, fragment: str
) -> None:
    json = {**email_body("welcome"), **payload} if path == "/" and payload else payload
    response = await templates.request(method, f"{API}{path}", json=json)
    assert response.status_code == 422, response.text
    assert_envelope(response.json(), success=False)
    assert fragment in response.json()["error"]


async def test_health_checks_the_database(templates: httpx.AsyncClient) -> None:
    response = await templates.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert_envelope(body, success=True)
    assert body["data"]["service"] == "templates"
    assert body["data"]["checks"] == {"database": "ok"}
