"""Asynchronous bounces and complaints: reports sent over SMTP to the bounce receiver."""

from __future__ import annotations

from typing import Any

import aiosmtplib
import pytest

from tests.credentials import SECRET_KEY
from tests.email.reports import arf, dsn
from tests.helpers import wait_for_condition
from tests.scenario import create_template, create_user, notification, wait_for_status
from tests.smtp_peer import Received
from tests.system import System
from tidings.core.auth import read_mailto_unsubscribe_tag

URL = "/api/v1/notifications/"
DOMAIN = "tidings.localhost"  # of the default TIDINGS_EMAIL_FROM


async def _delivered(system: System) -> tuple[dict[str, Any], dict[str, Any], Received]:
    """A new user, one notification delivered to them, and the email as the server got it."""
    gw = system.gateway
    user = await create_user(gw)
    template = await create_template(gw)
    body = notification(user["user_id"], template["code"])
    answer = (await gw.post(URL, json=body)).json()
    sent = await wait_for_status(gw, answer["data"]["notification_id"], "delivered")

    async def arrived() -> Received | None:
        found = [r for r in system.smtp.received if r.message["X-Request-ID"] == body["request_id"]]
        return found[0] if found else None

    received: Received = await wait_for_condition(arrived, timeout_s=10, what="the email")
    return {**user, "template_code": template["code"]}, sent, received


async def _report(system: System, raw: bytes, to: str) -> None:
    """Deliver a report as a remote MTA does: from the null sender, to the bounce address."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=system.settings["bounce_port"]) as smtp:
        # aiosmtplib.send refuses an empty sender; "<>" is what a DSN comes from.
        await smtp.sendmail("", [to], raw)


async def _suppressed(system: System) -> dict[str, dict[str, Any]]:
    rows = (await system.gateway.get("/api/v1/admin/suppressions/", params={"limit": 100})).json()
    return {r["address"]: r for r in rows["data"]}


async def test_mail_goes_out_from_the_verp_address(system: System) -> None:
    _, sent, received = await _delivered(system)
    assert received.mail_from == f"bounces+{sent['notification_id']}@{DOMAIN}"


async def test_hard_bounce_fails_the_notification_and_suppresses_the_address(
    system: System,
) -> None:
    gw = system.gateway
    user, sent, received = await _delivered(system)
    nid = sent["notification_id"]
    raw = dsn(received.message, to=f"bounces+{nid}@{DOMAIN}", recipient=user["email"])
    await _report(system, raw, f"bounces+{nid}@{DOMAIN}")

    failed = await wait_for_status(gw, nid, "failed")
    assert failed["error"].startswith("bounced: 5.1.1") and "User unknown" in failed["error"]

    async def suppressed() -> dict[str, Any] | None:
        return (await _suppressed(system)).get(user["email"].lower())

    row = await wait_for_condition(suppressed, timeout_s=10, what="the address suppressed")
    assert row["source"] == "bounce"
    again = await gw.post(URL, json=notification(user["user_id"], user["template_code"]))
    assert again.json()["data"]["status"] == "skipped"


async def test_a_bounce_naming_another_address_suppresses_nothing(system: System) -> None:
    """Anyone can send mail to the receiver: only the notification's own address goes."""
    gw = system.gateway
    user, sent, received = await _delivered(system)
    nid = sent["notification_id"]
    raw = dsn(received.message, to=f"bounces+{nid}@{DOMAIN}", recipient="victim@example.org")
    await _report(system, raw, f"bounces+{nid}@{DOMAIN}")
    await wait_for_status(gw, nid, "failed")
    suppressed = await _suppressed(system)
    assert "victim@example.org" not in suppressed and user["email"].lower() not in suppressed


async def test_soft_bounce_is_recorded_and_nothing_else(system: System) -> None:
    gw = system.gateway
    user, sent, received = await _delivered(system)
    nid = sent["notification_id"]
    raw = dsn(
        received.message,
        to=f"bounces+{nid}@{DOMAIN}",
        recipient=user["email"],
        action="delayed",
        status="4.2.2",
        diagnostic="smtp; 452 4.2.2 The email account that you tried to reach is over quota",
    )
    await _report(system, raw, f"bounces+{nid}@{DOMAIN}")

    async def noted() -> dict[str, Any] | None:
        got = (await gw.get(f"{URL}{nid}/")).json()["data"]
        return got if any("soft bounce" in (e["detail"] or "") for e in got["history"]) else None

    got = await wait_for_condition(noted, timeout_s=10, what="the soft bounce in the history")
    assert got["status"] == "delivered" and got["error"] is None
    entry = next(e for e in got["history"] if "soft bounce" in (e["detail"] or ""))
    assert entry["status"] == "pending"
    assert "4.2.2" in entry["detail"] and "over quota" in entry["detail"]
    assert user["email"].lower() not in await _suppressed(system)


async def test_complaint_turns_email_off_and_suppresses(system: System) -> None:
    gw = system.gateway
    user, sent, received = await _delivered(system)
    nid = sent["notification_id"]
    # A feedback loop writes to the plain bounce address and redacts the recipient: the
    # original message's headers name the notification.
    raw = arf(received.message, to=f"bounces@{DOMAIN}")
    await _report(system, raw, f"bounces@{DOMAIN}")

    async def email_off() -> bool:
        me = (await gw.get(f"/api/v1/users/{user['user_id']}/")).json()["data"]
        return me["preferences"]["email"] is False

    await wait_for_condition(email_off, timeout_s=10, what="the email preference off")
    row = (await _suppressed(system)).get(user["email"].lower())
    assert row is not None and row["source"] == "complaint"
    got = (await gw.get(f"{URL}{nid}/")).json()["data"]
    assert got["status"] == "delivered"
    assert any("complaint (abuse)" in (e["detail"] or "") for e in got["history"])
    again = await gw.post(URL, json=notification(user["user_id"], user["template_code"]))
    assert again.json()["data"]["status"] == "skipped"


async def test_the_receiver_takes_other_mail_and_refuses_other_addresses(system: System) -> None:
    port = system.settings["bounce_port"]
    plain = b"From: someone@example.org\r\nSubject: hello\r\n\r\nnot a report\r\n"
    errors, reply = await aiosmtplib.send(
        plain,
        sender="someone@example.org",
        recipients=[f"bounces@{DOMAIN}"],
        hostname="127.0.0.1",
        port=port,
    )
    assert errors == {} and reply == "OK"
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await aiosmtplib.send(
            plain,
            sender="someone@example.org",
            recipients=[f"postmaster@{DOMAIN}"],
            hostname="127.0.0.1",
            port=port,
        )
    # The receiver is still there.
    health = await system.gateway.get(f"http://127.0.0.1:{system.ports['email']}/health")
    assert health.status_code == 200


async def test_the_mailto_unsubscribe_turns_email_off(system: System) -> None:
    """The List-Unsubscribe mailto: reaches the bounce receiver; its signed tag names the
    notification, so the user's email preference goes. A tampered tag changes nothing."""
    gw = system.gateway
    user, _, received = await _delivered(system)
    header = str(received.message["List-Unsubscribe"])
    mailto = header.split("<mailto:", 1)[1].split("?", 1)[0]
    local, _, domain = mailto.partition("@")
    tampered = f"{local[:-1]}{'0' if local[-1] != '0' else '1'}@{domain}"
    note = b"Subject: unsubscribe\r\n\r\nunsubscribe\r\n"
    # A tampered tag names nothing (the receiver then ignores the mail).
    assert (
        read_mailto_unsubscribe_tag(SECRET_KEY, tampered.partition("+")[2].partition("@")[0])
        is None
    )
    assert read_mailto_unsubscribe_tag(SECRET_KEY, local.partition("+")[2]) is not None
    await _report(system, note, mailto)

    async def email_off() -> bool:
        me = (await gw.get(f"/api/v1/users/{user['user_id']}/")).json()["data"]
        return me["preferences"]["email"] is False

    await wait_for_condition(email_off, timeout_s=10, what="the email preference off")
    assert user["email"].lower() not in await _suppressed(system), "unsubscribing is not a bounce"
