"""What travels on the bus: notification work for the workers, status events for the gateway.

Timestamps travel as integer milliseconds (aio-pika sends float headers as 32-bit floats, and
integers are exact in JSON too).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from tidings.core import jsons
from tidings.core.status import Status

Channel = Literal["email", "push"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Recipient(BaseModel):
    user_id: str
    name: str
    email: str | None = None
    push_token: str | None = None
    language: str = "en"


class NotificationMessage(BaseModel):
    """One notification for a worker to render and deliver."""

    # A message of another version is dead-lettered, not guessed at.
    schema_version: Literal[1] = 1
    notification_id: str
    request_id: str
    notification_type: Channel
    template_code: str
    language: str
    variables: dict[str, Any]
    recipient: Recipient
    priority: int = 5
    metadata: dict[str, Any] | None = None
    # 1 for the first try; each retry travels as a new message with attempt + 1.
    attempt: int = Field(default=1, ge=1)
    # The replay generation: 0, then 1 for the first replay of a dead letter, and so on.
    round: int = Field(default=0, ge=0)
    # One line per failed attempt so far, oldest first.
    errors: list[str] = Field(default_factory=list)
    # When this round was first tried: the clock for TIDINGS_MAX_WAIT_S.
    first_try_ms: int | None = None
    created_at_ms: int = Field(default_factory=now_ms)
    # The receiving side's reply to a send whose ``sent`` mark could not be written (the
    # worker's database was down): the copy that carries it records the mark and reports,
    # and never sends again.
    sent_reply: str | None = None

    def dumps(self) -> bytes:
        return jsons.dumps(self.model_dump(mode="json"))


_ID_FIELD = re.compile(rb'"notification_id"\s*:\s*"([0-9A-Za-z-]{1,64})"')


def salvage(body: bytes) -> dict[str, Any] | None:
    """What can still be read of a message that does not parse as its model: its
    notification id (and round and attempt, when the body is JSON at all), so that the
    notification is reported failed and its dead letter found by id. None if no id."""
    try:
        # The json module, not orjson: it reads deeper nesting than the models' parser.
        value = json.loads(body)
    except (ValueError, RecursionError):
        found = _ID_FIELD.search(body[:4096])
        return {"notification_id": found.group(1).decode()} if found else None
    if not isinstance(value, dict) or not isinstance(value.get("notification_id"), str):
        return None
    fields = {"notification_id": value["notification_id"][:64]}
    for name in ("round", "attempt"):
        if isinstance(value.get(name), int) and 0 <= value[name] < 2**31:
            fields[name] = value[name]
    return fields


class RemovedDevice(BaseModel):
    """A push device its push service called gone (404/410, UNREGISTERED), marked dead."""

    device_id: str
    reason: str


class StatusEvent(BaseModel):
    """A worker's report about one notification; the gateway records it."""

    notification_id: str
    status: Status
    channel: Channel
    error: str | None = None
    detail: str | None = None
    attempt: int = 1
    round: int = 0
    # An address the receiving server refused for good: the gateway suppresses it.
    suppress: str | None = None
    # What the mail system said after the server took the message (a DSN or an ARF report
    # at the bounce receiver). Such a report knows no attempt or round: the gateway applies
    # it to the current ones; a complaint also turns the user's email preference off.
    feedback: Literal["bounce", "soft_bounce", "complaint", "unsubscribe"] | None = None
    # The push devices found gone while delivering it (this attempt or an earlier one): the
    # gateway captures a device.removed webhook event for each (once per device).
    removed_devices: list[RemovedDevice] = Field(default_factory=list)
    at_ms: int = Field(default_factory=now_ms)

    def dumps(self) -> bytes:
        return jsons.dumps(self.model_dump(mode="json"))
