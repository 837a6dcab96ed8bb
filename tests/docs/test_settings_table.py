"""docs/settings.md lists every setting of every class, under the class that adds it, with its
default, and nothing else; each service's settings class holds only what that service reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from tidings.core.settings import TidingsSettings, WorkerSettings
from tidings.email_worker.settings import EmailSettings
from tidings.gateway.settings import GatewaySettings
from tidings.push_worker.settings import PushSettings
from tidings.settings_doc import SECTIONS, default_text, own_fields, settings_markdown
from tidings.templates.settings import TemplatesSettings
from tidings.users.settings import UsersSettings
from tidings.webhooks.settings import WebhooksSettings

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "settings.md"
SERVICE_SETTINGS: dict[str, type[BaseSettings]] = {
    "gateway": GatewaySettings,
    "users": UsersSettings,
    "templates": TemplatesSettings,
    "email": EmailSettings,
    "push": PushSettings,
    "webhooks": WebhooksSettings,
}


def documented() -> dict[str, dict[str, str]]:
    """docs/settings.md as {section heading: {variable: default}}."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in TABLE.read_text().splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), {})
        elif (
            row := re.match(r"\| `(TIDINGS_[A-Z0-9_]+)` \| ([^|]+) \|", line)
        ) and current is not None:
            current[row[1]] = row[2].strip()
    return sections


def test_docs_settings_md_is_written_from_the_classes() -> None:
    assert TABLE.read_text() == settings_markdown(), (
        "docs/settings.md is stale: run `python -m tidings.settings_doc > docs/settings.md`"
    )


def test_every_field_is_in_the_table_under_its_service_with_its_default_and_nothing_else() -> None:
    """Read from the file itself, not from the generator: a field the generator skipped, a
    row for a field no class has, a row under the wrong service or with another default
    each fail here."""
    table = documented()
    expected = {
        heading: {
            f"TIDINGS_{name.upper()}": default_text(info) for name, info in own_fields(cls).items()
        }
        for heading, _, cls in SECTIONS
    }
    assert set(table) == set(expected)
    for heading in expected:
        missing = sorted(set(expected[heading]) - set(table[heading]))
        extra = sorted(set(table[heading]) - set(expected[heading]))
        assert not missing, f"{heading}: settings not in docs/settings.md: {missing}"
        assert not extra, f"{heading}: rows of docs/settings.md no class has: {extra}"
        wrong = {
            v: (table[heading][v], d)
            for v, d in expected[heading].items()
            if table[heading][v] != d
        }
        assert not wrong, f"{heading}: documented default != the class's: {wrong}"


def test_the_sections_cover_every_class_and_every_field_once_per_reader() -> None:
    """Each service's fields are exactly those of the sections of its class's ancestry."""
    by_class = {cls: set(own_fields(cls)) for _, _, cls in SECTIONS}
    for service, cls in SERVICE_SETTINGS.items():
        listed = set().union(*(fields for c, fields in by_class.items() if issubclass(cls, c)))
        assert listed == set(cls.model_fields), service


def test_the_readme_and_operations_guide_point_at_the_table() -> None:
    assert "(docs/settings.md)" in (ROOT / "README.md").read_text()
    assert "(settings.md)" in (ROOT / "docs" / "operations.md").read_text()


def test_every_variable_the_docs_name_is_a_setting() -> None:
    known = {f"TIDINGS_{n.upper()}" for cls in SERVICE_SETTINGS.values() for n in cls.model_fields}
    named: set[str] = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        named |= set(re.findall(r"TIDINGS_[A-Z0-9_]*[A-Z0-9]\b", doc.read_text()))
    unknown = sorted(v for v in named - known if not v.startswith("TIDINGS_TEST_"))
    assert not unknown, f"the docs name settings no class has: {unknown}"


# What belongs to one service (or to the workers), by field-name prefix, and who owns it.
CONCERNS: dict[str, tuple[tuple[str, ...], set[str]]] = {
    "SMTP, DKIM, Mailgun sending, bounces, From": (
        (
            "smtp_",
            "dkim_",
            "bounce_",
            "mailgun_api",
            "mailgun_domain",
            "mailgun_base",
            "email_from",
            "email_transport",
            "public_url",
        ),
        {"email"},
    ),
    "VAPID signing, FCM, calls to push services": (
        (
            "vapid_private",
            "vapid_subject",
            "fcm_",
            "push_ttl",
            "push_timeout",
            "push_deadline",
            "push_max",
            "push_breaker",
        ),
        {"push"},
    ),
    "API rate limits, relay, reconciler, Mailgun webhook": (
        (
            "rate_limit_",
            "recipient_",
            "login_",
            "user_rate",
            "user_burst",
            "auth_failure_",
            "relay_",
            "reconcile_",
            "priority_lane",
            "user_cache",
            "mailgun_webhook",
            "vapid_public",
        ),
        {"gateway"},
    ),
    "users' tokens and devices": (
        ("access_token", "refresh_token", "max_devices", "device_register_"),
        {"users"},
    ),
    "the delivery flow's retry policy": (
        ("max_attempts", "retry_", "delivery_lease", "max_wait"),
        {"email", "push"},
    ),
    "the workers' bulk lane and outbound pacing": (
        ("bulk_prefetch", "outbound_"),
        {"email", "push"},
    ),
}


@pytest.mark.parametrize("service", list(SERVICE_SETTINGS))
def test_a_service_has_only_its_own_settings_and_the_shared_ones(service: str) -> None:
    fields = set(SERVICE_SETTINGS[service].model_fields)
    for concern, (prefixes, owners) in CONCERNS.items():
        found = sorted(f for f in fields if f.startswith(prefixes))
        if service in owners:
            assert found, f"{service} should have its settings for {concern}"
        else:
            assert not found, f"{service} has settings for {concern}: {found}"


def test_the_shared_settings_hold_no_service_s_own() -> None:
    every_prefix = tuple(p for prefixes, _ in CONCERNS.values() for p in prefixes)
    shared = set(TidingsSettings.model_fields)
    assert not sorted(f for f in shared if f.startswith(every_prefix))
    assert (
        not set(WorkerSettings.model_fields)
        - shared
        - {"max_attempts", "retry_base_s", "retry_cap_s", "delivery_lease_s", "max_wait_s"}
        - {"bulk_prefetch", "outbound_burst", "outbound_queue_s"}
    )
