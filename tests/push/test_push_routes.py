"""The gateway's push routes (VAPID public key, demo page) and `tidings vapid generate`."""

from __future__ import annotations

import argparse
import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from tests.helpers import assert_envelope
from tidings.cli import vapid as cli_push
from tidings.core.web import create_service_app
from tidings.gateway.push_routes import create_push_router
from tidings.push_worker.senders.webpush import load_vapid, public_key_b64


def gateway_with(key: str | None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = create_service_app("gateway", max_body_bytes=4096, lifespan=lifespan)
    app.include_router(create_push_router(key))
    return app


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_the_vapid_public_key_is_served_in_the_envelope() -> None:
    private, public = cli_push.generate_vapid_keys()
    async with client(gateway_with(public)) as http:
        answer = await http.get("/api/v1/push/vapid-public-key/")
    assert answer.status_code == 200
    assert_envelope(answer.json(), success=True)
    assert answer.json()["data"] == {"vapid_public_key": public}
    # The pair matches: the worker's key (from the private half) is the one served.
    assert public_key_b64(load_vapid(private)) == public
    raw = base64.urlsafe_b64decode(public + "==")
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)


async def test_without_a_key_the_answer_says_how_to_configure_it() -> None:
    async with client(gateway_with(None)) as http:
        answer = await http.get("/api/v1/push/vapid-public-key/")
    assert answer.status_code == 404
    assert_envelope(answer.json(), success=False)
    assert "TIDINGS_VAPID_PUBLIC_KEY" in answer.json()["error"]


async def test_the_demo_page_and_its_scripts() -> None:
    async with client(gateway_with("key")) as http:
        page = await http.get("/push-demo/")
        script = await http.get("/push-demo/demo.js")
        worker = await http.get("/push-demo/sw.js")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/push-demo/demo.js">' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "pushManager.subscribe" in script.text
    assert "/api/v1/push/vapid-public-key/" in script.text
    assert "/devices/" in script.text
    assert worker.status_code == 200 and "javascript" in worker.headers["content-type"]
    assert "showNotification" in worker.text and "openWindow" in worker.text


def test_vapid_generate_prints_and_writes_a_key_pair(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    cli_push.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["vapid", "generate"])
    assert args.func(args) == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.split())
    assert (
        public_key_b64(load_vapid(lines["TIDINGS_VAPID_PRIVATE_KEY"]))
        == lines["TIDINGS_VAPID_PUBLIC_KEY"]
    )

    out = tmp_path / "vapid.env"
    args = parser.parse_args(["vapid", "generate", "--out", str(out)])
    assert args.func(args) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    assert "TIDINGS_VAPID_PRIVATE_KEY=" in out.read_text()
    assert args.func(args) == 1  # never overwrites a key without --force
