"""The gateway's HTTP API from a shell, as the admin: the URL from ``--url`` or the settings
(TIDINGS_GATEWAY_URL, else the gateway's host and port), the key from ``--key``, else
TIDINGS_ADMIN_API_KEY, else the one the embedded default kept in its data directory."""

from __future__ import annotations

import argparse
from typing import Any

import httpx

from tidings.core.settings import TidingsSettings
from tidings.credentials import read_kept


def add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="the gateway (default: TIDINGS_GATEWAY_URL or its port)")
    parser.add_argument("--key", help="the admin key (default: TIDINGS_ADMIN_API_KEY or kept)")


def admin_key(settings: TidingsSettings, given: str | None = None) -> str | None:
    if given:
        return given
    if settings.admin_api_key is not None:
        return settings.admin_api_key.get_secret_value()
    return read_kept(settings).get("admin_api_key")


def call(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
    """The gateway's answer (its envelope); a one-line SystemExit when it is not a success."""
    settings = TidingsSettings()
    key = admin_key(settings, getattr(args, "key", None))
    if key is None:
        raise SystemExit(
            "tidings: no admin key: set TIDINGS_ADMIN_API_KEY (or --key), or start the "
            "embedded default once (`tidings up`), which keeps the one it makes"
        )
    url = (getattr(args, "url", None) or settings.url_of("gateway")).rstrip("/")
    try:
        answer = httpx.request(
            method, url + path, headers={"Authorization": f"Bearer {key}"}, timeout=30, **kwargs
        )
        body: dict[str, Any] = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SystemExit(f"tidings: the gateway at {url} did not answer: {exc}") from exc
    if not body.get("success"):
        raise SystemExit(f"tidings: {answer.status_code} {body.get('error')}")
    return body
