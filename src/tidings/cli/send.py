"""``tidings send`` and ``tidings status``: a notification sent and followed from a shell,
through the running gateway (see :mod:`tidings.cli.gateway`), for trying Tidings without
curl."""

from __future__ import annotations

import argparse
import json
import secrets
import uuid
from typing import Any

from tidings.cli.gateway import add_target_options, call


def variables(items: list[str]) -> dict[str, Any]:
    """``name=Ada link=https://…`` and JSON objects (``'{"meta": {…}}'``), later ones win."""
    out: dict[str, Any] = {}
    for item in items:
        if item.lstrip().startswith("{"):
            try:
                parsed = json.loads(item)
            except ValueError as exc:
                raise SystemExit(f"tidings: {item!r} is not a JSON object: {exc}") from exc
            if not isinstance(parsed, dict):
                raise SystemExit(f"tidings: {item!r} is not a JSON object")
            out |= parsed
        elif "=" in item:
            key, _, value = item.partition("=")
            out[key.strip()] = value
        else:
            raise SystemExit(f"tidings: {item!r} is neither KEY=VALUE nor a JSON object")
    return out


def _recipient(args: argparse.Namespace, name: str | None) -> str:
    """The user id to send to: ``args.to`` itself, or a new user with that email address."""
    try:
        return str(uuid.UUID(args.to))
    except ValueError:
        pass
    if "@" not in args.to:
        raise SystemExit(f"tidings: {args.to!r} is neither a user id nor an email address")
    user = {
        "name": name or args.to.split("@", 1)[0],
        "email": args.to,
        "push_token": None,
        "preferences": {"email": True, "push": True},
        "password": secrets.token_urlsafe(24),
    }
    try:
        data = call(args, "POST", "/api/v1/users/", json=user)["data"]
    except SystemExit as exc:
        if " 409 " in f" {exc} ":
            raise SystemExit(f"{exc}: send to that user's id instead") from None
        raise
    print(f"user {data['user_id']} created for {args.to}")
    return str(data["user_id"])


def _send(args: argparse.Namespace) -> int:
    values = variables(args.variables)
    body = {
        "notification_type": args.channel,
        "user_id": _recipient(args, values.get("name")),
        "template_code": args.template,
        "variables": values,
        "request_id": args.request_id or f"cli-{uuid.uuid4().hex}",
        "priority": args.priority,
        "metadata": None,
    }
    data = call(args, "POST", "/api/v1/notifications/", json=body)["data"]
    print(
        f"{data['notification_id']}  {data['status']}  (tidings status {data['notification_id']})"
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    data = call(args, "GET", f"/api/v1/notifications/{args.id}/")["data"]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(
        f"{data['notification_id']}  {data['notification_type']}  {data['status']}"
        f"  to {data['user_id']}  template {data['template_code']} ({data['language']})"
        + (f"  error: {data['error']}" if data["error"] else "")
    )
    for h in data["history"]:
        attempt = f"attempt {h['attempt']}" if h["attempt"] else ""
        notes = "  ".join(x for x in (attempt, h["detail"], h["error"]) if x)
        print(f"  {h['timestamp']}  {h['status']:10}  {notes}".rstrip())
    return 0


def add_commands(sub: Any) -> None:
    send = sub.add_parser(
        "send", help="send a notification through the running gateway (to a user or an address)"
    )
    send.add_argument("to", help="a user id, or an email address (a new user is created for it)")
    send.add_argument("template", help="the template's code")
    send.add_argument(
        "variables",
        nargs="*",
        metavar="KEY=VALUE|JSON",
        help="the template's variables (name and link are required), e.g. name=Ada "
        'link=https://example.com or \'{"meta": {"plan": "pro"}}\'',
    )
    send.add_argument("--channel", choices=("email", "push"), default="email")
    send.add_argument("--priority", type=int, default=5, help="0 (lowest) to 9 (default 5)")
    send.add_argument("--request-id", help="the idempotency key (default: a new one)")
    add_target_options(send)
    send.set_defaults(func=_send)
    status = sub.add_parser("status", help="a notification's status and history")
    status.add_argument("id", help="the notification id `tidings send` printed")
    status.add_argument("--json", action="store_true", help="the gateway's answer as JSON")
    add_target_options(status)
    status.set_defaults(func=_status)
