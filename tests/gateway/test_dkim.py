"""DKIM: with a key configured every email is signed, List-Unsubscribe included, and the
signature verifies with the public key (as a receiver would find it in DNS), for an RSA key
and for an Ed25519 one (RFC 8463), the algorithm taken from the PEM."""

from __future__ import annotations

from typing import Any

import dkim
import pytest

from tests.dkim_keys import KEYS, dns_answering
from tests.scenario import create_template, create_user, notification
from tests.system import System


@pytest.fixture(scope="module", params=sorted(KEYS))
def key_type(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def system_overrides(key_type: str) -> dict[str, Any]:
    return {"dkim_private_key": KEYS[key_type].pem, "dkim_selector": "s2026"}


async def test_emails_are_signed_and_verify(system: System, key_type: str) -> None:
    dns = dns_answering(b"s2026._domainkey.tidings.localhost.", KEYS[key_type])
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    body = notification(user["user_id"], template["code"])
    await gw.post("/api/v1/notifications/", json=body)
    received = await system.smtp.next()
    assert received.message["X-Request-ID"] == body["request_id"]
    signature = str(received.message["DKIM-Signature"])
    tags = {k.strip(): v.strip() for k, _, v in (t.partition("=") for t in signature.split(";"))}
    assert tags["d"] == "tidings.localhost" and tags["s"] == "s2026"
    assert tags["a"] == f"{key_type}-sha256" and tags["c"] == "relaxed/relaxed"
    signed = tags["h"].replace(" ", "").lower().split(":")
    assert "list-unsubscribe" in signed and "list-unsubscribe-post" in signed
    assert dkim.verify(received.raw, dnsfunc=dns)
    tampered = received.raw.replace(b"Welcome, Grace", b"Welcome, Mallory")
    assert tampered != received.raw
    assert not dkim.verify(tampered, dnsfunc=dns)
