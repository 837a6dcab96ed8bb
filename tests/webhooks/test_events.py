"""The API's enum of event types is the worker's list (written out once for the schema)."""

from __future__ import annotations

from typing import get_args

from tidings.gateway.webhook_schemas import EventName
from tidings.webhooks.events import ALL, EVENT_TYPES


def test_the_schema_names_every_event_type() -> None:
    assert get_args(EventName) == (*EVENT_TYPES, ALL)
