"""The accept route answers its 202 with the bytes FastAPI's response_model path made of the
same envelope, byte for byte, without that path's second validation and encoding."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from fastapi.responses import JSONResponse

from tidings.core.envelope import Envelope, ok
from tidings.core.status import Status
from tidings.gateway.router import _accepted
from tidings.gateway.schemas import NotificationAccepted


def test_the_202_is_what_the_response_model_made_of_it() -> None:
    result = NotificationAccepted(
        notification_id=uuid.uuid4(),
        request_id='req-é-\u2603-"quoted"',
        status=Status.PENDING,
        notification_type="email",
        created_at=dt.datetime(2026, 12, 1, 13, 5, 7, 123456, tzinfo=dt.UTC),
    )
    for message in ("notification accepted", "duplicate request_id: this is the notification"):
        answer = _accepted(result, message)
        through_fastapi = JSONResponse(
            Envelope[NotificationAccepted]
            .model_validate(ok(result, message))
            .model_dump(mode="json"),
            202,
        )
        assert answer.status_code == 202
        assert answer.body == through_fastapi.body, (answer.body, through_fastapi.body)
        assert answer.headers["content-type"] == through_fastapi.headers["content-type"]
        assert json.loads(answer.body)["data"]["created_at"] == "2026-12-01T13:05:07.123456Z"
