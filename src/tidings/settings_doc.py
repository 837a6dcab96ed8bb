"""docs/settings.md, from the settings classes: every ``TIDINGS_*`` variable under the
service that reads it, with its default and its meaning (the field's description).

    python -m tidings.settings_doc > docs/settings.md

tests/docs checks the file against the classes, both ways.
"""

from __future__ import annotations

from enum import Enum

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from tidings.core.settings import TidingsSettings, WorkerSettings
from tidings.email_worker.settings import EmailSettings
from tidings.gateway.settings import GatewaySettings
from tidings.push_worker.settings import PushSettings
from tidings.templates.settings import TemplatesSettings
from tidings.users.settings import UsersSettings
from tidings.webhooks.settings import WebhooksSettings

# (heading, the services that read these settings, the class that adds them).
SECTIONS: tuple[tuple[str, str, type[BaseSettings]], ...] = (
    ("Shared", "every service", TidingsSettings),
    ("Delivery workers", "email, push", WorkerSettings),
    ("Gateway", "gateway", GatewaySettings),
    ("Users service", "users", UsersSettings),
    ("Templates service", "templates", TemplatesSettings),
    ("Email worker", "email", EmailSettings),
    ("Push worker", "push", PushSettings),
    ("Webhooks worker", "webhooks", WebhooksSettings),
)

INTRO = """\
# Settings

Every setting is an environment variable, `TIDINGS_<FIELD>`, read once when a process starts.
With none of `TIDINGS_DATABASE_URL`, `TIDINGS_AMQP_URL` and `TIDINGS_REDIS_URL` set,
`tidings up` runs the embedded default (SQLite, the in-process bus and cache, every service in
one process, all from one environment); with them set, it runs each service as its own
supervised process, each reading the settings it needs from the same environment.

Each section lists the settings one class adds: the shared ones
(`tidings.core.settings.TidingsSettings`), the delivery workers' retry policy
(`WorkerSettings`), then each service's own (`<service>/settings.py`). This file is written
from those classes by `python -m tidings.settings_doc > docs/settings.md`; a test checks it.
"""


def own_fields(cls: type[BaseSettings]) -> dict[str, FieldInfo]:
    """The fields ``cls`` adds to its base."""
    inherited = getattr(cls.__mro__[1], "model_fields", {})
    return {name: info for name, info in cls.model_fields.items() if name not in inherited}


def default_text(info: FieldInfo) -> str:
    value = info.default
    if value is None:
        return "unset"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float) and value.is_integer():
        text = str(int(value))
    else:
        text = str(value)
    return f"`{text}`" if text else "empty"


def row(name: str, info: FieldInfo) -> str:
    meaning = info.description
    if not meaning or "|" in meaning or "\n" in meaning:
        raise ValueError(f"{name}: a setting's description is its one-line meaning, no '|'")
    return f"| `TIDINGS_{name.upper()}` | {default_text(info)} | {meaning} |"


def settings_markdown() -> str:
    parts = [INTRO]
    for heading, readers, cls in SECTIONS:
        parts.append(f"\n## {heading}\n\nRead by: {readers} (`{cls.__name__}`).\n\n")
        parts.append("| variable | default | meaning |\n| --- | --- | --- |\n")
        parts.extend(row(name, info) + "\n" for name, info in own_fields(cls).items())
    return "".join(parts)


if __name__ == "__main__":
    print(settings_markdown(), end="")
