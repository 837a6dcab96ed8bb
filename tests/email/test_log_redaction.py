"""Unsubscribe tokens (bearer tokens valid 400 days, in the link's path) and other bearer
material never reach the log: the one handler configure_logging installs redacts them, in
the request line of core.web's middleware as in any other record."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from tests.credentials import SECRET_KEY
from tidings.core.auth import unsubscribe_token
from tidings.core.logs import configure_logging
from tidings.core.web import ServiceMiddleware


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """configure_logging as a service runs it, writing to a buffer; the logging set-up of
    the test run is put back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger("httpx").level)
    access = logging.getLogger("uvicorn.access").disabled
    configure_logging("gateway", "INFO", "json")
    buffer = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], level, httpx_level = saved
        root.setLevel(level)
        logging.getLogger("httpx").setLevel(httpx_level)
        logging.getLogger("uvicorn.access").disabled = access


async def test_unsubscribe_token_is_not_in_the_request_line(log_output: io.StringIO) -> None:
    app = FastAPI()

    @app.get("/unsubscribe/{token}/")
    async def page(token: str) -> dict[str, str]:
        return {"ok": "yes"}

    token = unsubscribe_token(SECRET_KEY, str(uuid.uuid4()))
    transport = httpx.ASGITransport(app=ServiceMiddleware(app, service="gateway"))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get(f"/unsubscribe/{token}/")).status_code == 200
    lines = log_output.getvalue()
    assert "GET /unsubscribe/[redacted]/ 200" in lines, lines
    assert token not in lines and token.split(".")[2] not in lines


def test_bearer_material_in_any_record_is_redacted(log_output: io.StringIO) -> None:
    token = unsubscribe_token(SECRET_KEY, str(uuid.uuid4()))
    key = "tid_" + "k" * 43
    logging.getLogger("tidings.test").warning(
        "calling %s with %s and %s", "https://x.example/cb?token=s3cret&x=1", token, key
    )
    line = log_output.getvalue()
    assert "token=[redacted]&x=1" in line and "tid_[redacted]" in line, line
    for secret in ("s3cret", token, key):
        assert secret not in line
    # httpx's own request lines (full URLs: users' Web Push endpoints) stay out.
    logging.getLogger("httpx").info("HTTP Request: POST https://push.example/wpush/abc")
    assert "wpush/abc" not in log_output.getvalue()
