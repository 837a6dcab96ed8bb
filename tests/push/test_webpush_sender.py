"""The Web Push sender on its own, against a real receiver on 127.0.0.1: a breaker per push
service, where it may connect (public addresses only, the checked address pinned), and
what of an answer reaches the notification's history."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers import free_port
from tests.push.support import CONTENT, standalone_sender, subscribed_device, webpush_device
from tests.push.webpush_peer import Script, WebPushReceiver
from tidings.cli.vapid import generate_vapid_keys
from tidings.core.breaker import BreakerOpen
from tidings.core.errors import PermanentError, RecipientInvalid, TransientError
from tidings.push_worker.breakers import OriginBreakers
from tidings.push_worker.senders.netguard import Resolver
from tidings.push_worker.senders.webpush import NOT_PUBLIC


@pytest.fixture
async def receiver_and_key() -> AsyncIterator[tuple[WebPushReceiver, str]]:
    private, public = generate_vapid_keys()
    receiver = await WebPushReceiver(public).start()
    try:
        yield receiver, private
    finally:
        await receiver.close()


def resolving(table: dict[str, list[str]], asked: list[str] | None = None) -> Resolver:
    """A resolver that answers from ``table`` (and notes every name it is asked)."""

    async def resolve(host: str, port: int) -> list[str]:
        if asked is not None:
            asked.append(host)
        return table[host]

    return resolve


async def test_a_refusing_push_service_opens_only_its_own_breaker(
    receiver_and_key: tuple[WebPushReceiver, str],
) -> None:
    receiver, private = receiver_and_key
    sender = standalone_sender(vapid_private_key=private, failures=2)
    refusing = webpush_device(f"http://127.0.0.1:{free_port()}/push/nobody")  # nothing listens
    try:
        for _ in range(2):
            with pytest.raises(TransientError):
                await sender.send(refusing, CONTENT)
        with pytest.raises(BreakerOpen):  # that push service is given a rest
            await sender.send(refusing, CONTENT)

        # Another push service (another user's browser) is not held up by it.
        reply = await sender.send(subscribed_device(receiver.subscribe()), CONTENT)
        assert reply == "webpush 201 accepted"
        health = await sender.breakers.health()
        origin = refusing.endpoint.rsplit("/push/", 1)[0]  # type: ignore[union-attr]
        assert health == f"1 of 2 origins open: {origin}"
    finally:
        await sender.close()


async def test_breakers_are_bounded_and_health_stays_short() -> None:
    breakers = OriginBreakers("webpush", failure_threshold=1, reset_timeout_s=60, max_origins=3)
    assert await breakers.health() is None
    for i in range(5):
        breakers.for_origin(f"https://push{i}.example").record_failure()
    assert len(breakers) == 3  # the least recently used went first
    assert breakers.open_origins() == [f"https://push{i}.example" for i in (2, 3, 4)]
    breakers.for_origin("https://push2.example")  # used again: now the most recent
    breakers.for_origin("https://new.example" + "x" * 200)
    assert "https://push3.example" not in breakers.open_origins()
    many = OriginBreakers("webpush", failure_threshold=1, reset_timeout_s=60)
    for i in range(50):
        many.for_origin(f"https://push{i}.example" + "x" * 100).record_failure()
    line = await many.health()
    assert line is not None and line.startswith("50 of 50 origins open: https://push0.")
    assert line.endswith(" and 47 more") and len(line) < 300


@pytest.mark.parametrize(
    ("endpoint", "allow_insecure"),
    [
        ("https://2130706433/push/x", False),  # the resolver reads it as 127.0.0.1
        ("https://localhost/push/x", False),
        ("https://0x7f000001/push/x", False),
        ("http://127.0.0.1:9/push/x", False),  # and plain http is refused outright
    ],
)
async def test_an_endpoint_resolving_to_loopback_is_refused_when_insecure_is_not_allowed(
    endpoint: str, allow_insecure: bool
) -> None:
    """Registration refuses these; a row stored before that check must not be sent to."""
    sender = standalone_sender(allow_insecure=allow_insecure)
    try:
        with pytest.raises(RecipientInvalid) as refused:
            await sender.send(webpush_device(endpoint), CONTENT)
        assert refused.value.message in (NOT_PUBLIC, "the endpoint's scheme is 'http', not https")
    finally:
        await sender.close()


async def test_an_ipv6_literal_endpoint_fails_its_device_and_nothing_else() -> None:
    """VAPID (py_vapid) cannot name an IPv6-literal origin: the device is refused, the
    attempt is not crashed."""
    sender = standalone_sender(allow_insecure=False)
    try:
        with pytest.raises(RecipientInvalid) as refused:
            await sender.send(webpush_device("https://[2606:4700::1111]/push/x"), CONTENT)
        assert "VAPID cannot name" in refused.value.message
    finally:
        await sender.close()


@pytest.mark.parametrize("addresses", [["10.0.0.5"], ["93.184.215.14", "192.168.1.10"]])
async def test_a_name_resolving_to_a_private_address_is_refused_at_send_time(
    addresses: list[str],
) -> None:
    """Even with insecure endpoints allowed (that only admits loopback), and even when only
    one of the name's addresses is private."""
    sender = standalone_sender(
        allow_insecure=True, resolve=resolving({"push.example.com": addresses})
    )
    try:
        with pytest.raises(RecipientInvalid) as refused:
            await sender.send(webpush_device("https://push.example.com/push/x"), CONTENT)
        assert refused.value.message == NOT_PUBLIC
        assert "10.0.0.5" not in refused.value.message  # the network is not described
        assert not await sender.breakers.health()  # a refusal is not an outage
    finally:
        await sender.close()


async def test_the_connection_goes_to_the_address_that_was_checked(
    receiver_and_key: tuple[WebPushReceiver, str],
) -> None:
    """A name no DNS knows, which only the checking resolver maps (to the receiver):
    reaching the receiver proves the socket was opened to the checked address, not to a
    second look-up of the name; the Host header still names the endpoint's host."""
    receiver, private = receiver_and_key
    asked: list[str] = []
    sender = standalone_sender(
        vapid_private_key=private,
        resolve=resolving({"push.tidings.test": ["127.0.0.1"]}, asked),
    )
    subscription = receiver.subscribe()
    device = subscribed_device(
        {
            **subscription,
            "endpoint": subscription["endpoint"].replace("127.0.0.1", "push.tidings.test"),
        }
    )
    try:
        # The receiver expects its own origin as the VAPID audience, so it refuses (400,
        # with its reason in the body); but the request did arrive.
        with pytest.raises(PermanentError) as refused:
            await sender.send(device, CONTENT)
    finally:
        await sender.close()
    assert asked == ["push.tidings.test"]
    assert len(receiver.attempts_at(subscription)) == 1
    assert receiver.problems and "VAPID" in receiver.problems[0]
    # Only the status and a fixed reason: the push service's body never reaches the history.
    assert refused.value.message == "push service refused the message: 400"


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        # The endpoint is the user's: its refusal is the device's problem, not an alert.
        (401, "recipient_invalid", "refused this subscription (401)"),
        (403, "recipient_invalid", "refused this subscription (403)"),
        (500, "transient", "answered 500"),
        (503, "transient", "answered 503"),
        (410, "recipient_invalid", "answered 410: subscription gone"),
    ],
)
async def test_answers_are_classified_without_the_body(
    receiver_and_key: tuple[WebPushReceiver, str], status: int, error: str, kind: str
) -> None:
    receiver, private = receiver_and_key
    sender = standalone_sender(vapid_private_key=private)
    subscription = receiver.subscribe()
    receiver.scripts[receiver.sid_of(subscription)] = Script(
        answers=[(status, {})], body=b"internal secret 10.1.2.3"
    )
    try:
        with pytest.raises(Exception) as failed:
            await sender.send(subscribed_device(subscription), CONTENT)
    finally:
        await sender.close()
    assert getattr(failed.value, "kind", None) == error
    assert kind in failed.value.message  # type: ignore[attr-defined]
    assert "secret" not in failed.value.message  # type: ignore[attr-defined]
