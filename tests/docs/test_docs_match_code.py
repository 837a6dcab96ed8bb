"""The README and the exported OpenAPI schemas stay true to the code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tidings.email_worker.settings import EmailSettings
from tidings.gateway.settings import GatewaySettings
from tidings.push_worker.settings import PushSettings
from tidings.runner import openapi_schemas
from tidings.templates.settings import TemplatesSettings
from tidings.users.settings import UsersSettings
from tidings.webhooks.settings import WebhooksSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = (
    GatewaySettings,
    UsersSettings,
    TemplatesSettings,
    EmailSettings,
    PushSettings,
    WebhooksSettings,
)


def test_every_setting_is_in_the_settings_table() -> None:
    """The table moved from the README to docs/settings.md (the README links to it);
    tests/docs/test_settings_table.py checks it row by row."""
    table = (ROOT / "docs" / "settings.md").read_text()
    variables = {f"TIDINGS_{name.upper()}" for cls in SETTINGS for name in cls.model_fields}
    missing = sorted(v for v in variables if f"`{v}`" not in table)
    assert not missing, f"undocumented settings: {missing}"


@pytest.mark.parametrize("service", ["gateway", "users", "templates", "email", "push", "webhooks"])
def test_exported_openapi_schema_is_current(service: str) -> None:
    exported = json.loads((ROOT / "docs" / "openapi" / f"{service}.json").read_text())
    assert exported == openapi_schemas()[service], "docs/openapi is stale: run `tidings openapi`"


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in section.splitlines() if line.startswith("python3 ")]
    assert len(commands) == 2
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_every_example_in_the_api_schema_is_a_valid_request() -> None:
    """The examples shown in /docs and docs/openapi are requests the API accepts."""
    from pydantic import BaseModel

    from tidings.gateway import schemas as gateway_schemas
    from tidings.gateway import webhook_schemas
    from tidings.templates import schemas as templates_schemas
    from tidings.users import schemas as users_schemas

    checked = 0
    for module in (gateway_schemas, users_schemas, templates_schemas, webhook_schemas):
        for model in vars(module).values():
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                continue
            extra = model.model_config.get("json_schema_extra")
            for example in (extra or {}).get("examples", []) if isinstance(extra, dict) else []:
                model.model_validate(example)
                checked += 1
    assert checked >= 7
