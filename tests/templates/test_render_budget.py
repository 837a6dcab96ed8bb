"""Templates render under a budget (core/sandbox.py): what would build a huge string or run
for long is refused on save when it shows on its face, and stopped at render time otherwise,
with a reason that names the bound; /render/ needs templates:write."""

from __future__ import annotations

import re
import threading
import time
import uuid

import httpx
import pytest

from tests.credentials import SECRET_KEY, SERVICE_TOKEN
from tests.helpers import assert_envelope
from tests.templates.support import API, email_body, post_ok, push_body, unique_code
from tidings.core.auth import Principal, seal, user_tokens
from tidings.core.errors import InvalidInput
from tidings.core.rendering import check_template, render, render_content, render_content_async
from tidings.core.sandbox import MAX_STRING, Budget, OverBudget, render_cpu_s

# Each builds at least ten million characters or runs ten million iterations on an
# unbounded sandbox: small enough to finish there (so the test fails rather than hangs),
# far past every bound here.
OBVIOUS = [
    ("{{ 'x'|center(10000000) }}", "10000000 is over 1000"),
    ("{{ '%10000000s'|format('x') }}", "format width of 10000000"),
    ("{{ '%.10000000f'|format(1.5) }}", "format width of 10000000"),
    ("{{ '%10000000s' % 'x' }}", "format width of 10000000"),
    ("{{ '{:10000000}'.format('x') }}", "format width of 10000000"),
    ("{{ 'x'.ljust(10000000) }}", "10000000 is over 1000"),
    ("{{ 'x'|indent(10000000) }}", "10000000 is over 1000"),
    ("{{ [1]|batch(10000000, 0)|list }}", "10000000 is over 1000"),
    ("{{ {'a': 1}|tojson(10000000) }}", "10000000 is over 1000"),
    ("{% for i in range(1000000) %}{% endfor %}", "range of 1000000"),
    (
        "{% for i in range(4000) %}{% for j in range(4000) %}{% endfor %}{% endfor %}",
        "nested loops of 16000000",
    ),
]
# Over budget only once variables are in: stopped while rendering.
AT_RENDER = [
    ("{{ text|indent(1000) }}", {"text": "a\n" * 2000}, "indent would build"),
    ("{{ text|center(width) }}", {"text": "a", "width": 10_000_000}, "center width"),
    ("{{ ('%' ~ width ~ 's')|format('x') }}", {"width": 10_000_000}, "format width"),
    ("{{ 'x'|truncate(5, end=mark) }}", {"mark": "." * 3000}, "truncation mark"),
    ("{{ text|replace('', text) }}", {"text": "a" * 2000}, "replace would build"),
    ("{{ items|join(text) }}", {"items": list(range(2000)), "text": "a" * 1000}, "join"),
    ("{{ text|wordwrap(10) }}", {"text": "word " * 30_000}, "to wrap or urlize"),
    (
        "{% for a in items %}{% for b in items %}{% endfor %}{% endfor %}",
        {"items": list(range(2000))},
        "steps",
    ),
    (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(24) }}",
        {},
        "steps|CPU time",  # whichever comes first: a macro call costs some 5 µs
    ),
    (  # doubling by concatenation: each statement doubles, none is wide on its face
        "{% set a = text %}{% set b = a ~ a ~ a ~ a %}{% set c = b ~ b ~ b ~ b %}"
        "{% set d = c ~ c ~ c ~ c %}{{ d ~ d ~ d ~ d }}",
        {"text": "x" * 10_000},
        f"over {MAX_STRING}",
    ),
    ("{{ (n ** 100) ** 100 }}", {"n": 10**10}, "bits"),
    ("{% for i in range(3000) %}{{ text }}{% endfor %}", {"text": "y" * 2_000}, "characters"),
]


@pytest.mark.parametrize(("source", "bound"), OBVIOUS)
def test_obvious_excess_is_refused_on_save_and_at_render(source: str, bound: str) -> None:
    with pytest.raises(InvalidInput, match="over the render budget") as saved:
        check_template(source, field="body")
    assert bound in saved.value.message
    # And where it is saved anyway (before this check), the render stops it.
    with pytest.raises(InvalidInput, match="body: not allowed"):
        render(source, {}, html=False, field="body")


@pytest.mark.parametrize(("source", "variables", "bound"), AT_RENDER)
def test_excess_at_render_is_stopped_with_its_reason(
    source: str, variables: dict, bound: str
) -> None:
    check_template(source)  # nothing on its face
    with pytest.raises(InvalidInput, match="body: not allowed") as failed:
        render_content("push", {"title": "t", "body": source}, variables)
    assert re.search(bound, failed.value.message), failed.value.message


def test_ordinary_templates_render_as_before() -> None:
    source = (
        "{{ name|center(9) }}|{{ '%5s|%-3d'|format('a', 2) }}|{{ '{:>4}'.format('r') }}|"
        "{{ items|join(', ') }}|{{ [1, 2, 3]|batch(2)|list }}|{{ 'ab cd'|wordwrap(2) }}|"
        "{% for i in range(3) %}{{ loop.index }}{% endfor %}|{{ 'x' * 3 }}|{{ 2 ** 10 }}"
    )
    check_template(source)
    out = render(source, {"name": "Ada", "items": ["a", "b"]}, html=False)
    assert out == "   Ada   |    a|2  |   r|a, b|[[1, 2], [3]]|ab\ncd|123|xxx|1024"
    html = render(
        "<p>{{ x }}</p>{% for i in [1] %}<b>{{ i }}</b>{% endfor %}", {"x": "<"}, html=True
    )
    assert html == "<p>&lt;</p><b>1</b>"


def test_one_budget_for_every_field_of_a_notification() -> None:
    # Each field alone is within the budget; the three together are not.
    field = "{% for i in range(40000) %}{% endfor %}"
    template = {"subject": field, "body": field, "text_body": field}
    for name in ("subject", "body"):
        render(field, {}, html=False, field=name)
    with pytest.raises(InvalidInput, match="steps"):
        render_content("email", template, {})


def test_cpu_time_is_bounded() -> None:
    budget = Budget(cpu_s=0.002)
    budget.spend(1)
    deadline = time.monotonic() + 5
    while render_cpu_s() - budget.started < 0.003 and time.monotonic() < deadline:
        sum(range(1000))
    with pytest.raises(OverBudget, match="CPU time"):
        budget.spend(1)


async def test_rendering_for_the_service_runs_off_the_event_loop() -> None:
    seen: list[int] = []

    class Probe:
        def __str__(self) -> str:
            seen.append(threading.get_ident())
            return "probe"

    rendered = await render_content_async("push", {"title": "{{ p }}", "body": "b"}, {"p": Probe()})
    assert rendered["title"] == "probe"
    assert seen and threading.get_ident() not in seen


async def test_save_over_budget_is_422_and_not_stored(templates: httpx.AsyncClient) -> None:
    code = unique_code()
    response = await templates.post(
        f"{API}/", json=email_body(code, body="<p>{{ name|center(10000000) }}</p>")
    )
    assert response.status_code == 422, response.text
    assert_envelope(response.json(), success=False)
    assert response.json()["error"].startswith("body: over the render budget")
    assert (await templates.get(f"{API}/{code}/versions/")).status_code == 404


async def test_render_over_budget_is_422(templates: httpx.AsyncClient) -> None:
    code = unique_code()
    await post_ok(templates, push_body(code, body="{{ name|center(width) }}"))
    response = await templates.post(
        f"{API}/{code}/render/",
        json={"channel": "push", "variables": {"name": "A", "link": "L", "width": 10**7}},
    )
    assert response.status_code == 422, response.text
    assert_envelope(response.json(), success=False)
    assert "center width" in response.json()["error"]


def _sealed(scopes: set[str]) -> dict[str, str]:
    principal = Principal(kind="api_key", subject=str(uuid.uuid4()), scopes=frozenset(scopes))
    return {"X-Tidings-Principal": seal(SECRET_KEY, principal)}


async def test_render_needs_templates_write(templates: httpx.AsyncClient) -> None:
    code = unique_code()
    await post_ok(templates, email_body(code))
    user = user_tokens(SECRET_KEY, uuid.uuid4(), 60, 60)["access_token"]
    body = {"variables": {"name": "A", "link": "L"}}
    path = f"{API}/{code}/render/"
    for headers in (
        {"Authorization": f"Bearer {user}"},
        _sealed({"notifications:send", "notifications:read", "users:write"}),
    ):
        response = await templates.post(path, json=body, headers=headers)
        assert response.status_code == 403, response.text
        assert "templates:write" in response.json()["error"]
    for headers in (
        _sealed({"templates:write"}),
        {"Authorization": f"Bearer {SERVICE_TOKEN}"},  # the dashboard's preview
    ):
        response = await templates.post(path, json=body, headers=headers)
        assert response.status_code == 200, response.text
