"""The users service's check of a Web Push endpoint's host at registration: internal
hosts are refused in every spelling the system resolver reads, public push services pass.
(Where a name resolves is checked at send time: test_webpush_sender.py.)"""

from __future__ import annotations

import pytest

from tidings.core.errors import InvalidInput
from tidings.users.devices_validation import check_endpoint


@pytest.mark.parametrize(
    ("endpoint", "fragment"),
    [
        ("https://127.1/x", "not a dotted-quad"),
        ("https://2130706433/x", "not a dotted-quad"),
        ("https://0x7f000001/x", "not a dotted-quad"),
        ("https://0177.0.0.1/x", "not a dotted-quad"),
        ("https://169.254.169.254./x", "169.254.169.254 is not a public address"),
        ("https://100.64.0.7/x", "not a public address"),  # carrier-grade NAT
        ("https://[::ffff:10.0.0.1]/x", "IPv6 address literal"),
        ("https://[fd00::1]/x", "IPv6 address literal"),
        ("https://224.0.0.251/x", "not a public address"),
        ("https://0.0.0.0/x", "not a public address"),
        ("https://metadata/x", "not a public host name"),
        ("https://push.example.local/x", "a local name"),
        ("https://LOCALHOST./x", "a local name"),
    ],
)
def test_internal_hosts_in_any_spelling_are_refused(endpoint: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_endpoint(endpoint, allow_insecure=False)
    assert fragment in refused.value.message


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://fcm.googleapis.com/fcm/send/abc:APA91b",
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAA",
        "https://web.push.apple.com./QGuQ",  # a fully qualified name keeps working
        "https://8.8.8.8/x",
    ],
)
def test_public_push_services_pass(endpoint: str) -> None:
    check_endpoint(endpoint, allow_insecure=False)
