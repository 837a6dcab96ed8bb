"""``tidings webhooks``: outbound webhook endpoints from a shell, through the gateway's API
(docs/webhooks.md). ``--key`` takes a client's API key (its endpoints); without it the admin
key (every client's events, every endpoint)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tidings.cli.gateway import add_target_options, call

BASE = "/api/v1/webhooks/endpoints/"


def _line(e: dict[str, Any]) -> str:
    state = f"disabled ({e['disabled_reason']})" if e["disabled"] else "enabled"
    return f"{e['endpoint_id']}  {e['owner']:36}  {e['url']}  {','.join(e['events'])}  {state}"


def _create(args: argparse.Namespace) -> int:
    request = {"url": args.endpoint_url, "events": args.events, "description": args.description}
    data = call(args, "POST", BASE, json=request)["data"]
    print(_line(data))
    print(f"secret (shown this once): {data['secret']}")
    return 0


def _list(args: argparse.Namespace) -> int:
    found = call(args, "GET", BASE)["data"]
    for e in found:
        print(_line(e))
    print(f"{len(found)} endpoint(s)")
    return 0


def _show(args: argparse.Namespace) -> int:
    print(json.dumps(call(args, "GET", f"{BASE}{args.id}/")["data"], indent=2))
    return 0


def _patch(args: argparse.Namespace, changes: dict[str, Any]) -> int:
    print(_line(call(args, "PATCH", f"{BASE}{args.id}/", json=changes)["data"]))
    return 0


def _update(args: argparse.Namespace) -> int:
    changes = {k: v for k, v in (("url", args.new_url), ("events", args.events)) if v}
    return _patch(args, changes)


def _delete(args: argparse.Namespace) -> int:
    print(call(args, "DELETE", f"{BASE}{args.id}/")["message"])
    return 0


def _rotate(args: argparse.Namespace) -> int:
    data = call(args, "POST", f"{BASE}{args.id}/rotate-secret/")["data"]
    print(f"secret (shown this once): {data['secret']}")
    print(f"the previous one signs too until {data['previous_secret_until']}")
    return 0


def _messages(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"page": args.page, "limit": args.limit}
    if args.state:
        params["state"] = args.state
    body = call(args, "GET", f"{BASE}{args.id}/messages/", params=params)
    if args.json:
        print(json.dumps(body["data"], indent=2))
        return 0
    for m in body["data"]:
        last = m["attempt_log"][-1] if m["attempt_log"] else None
        answer = (
            f"{last['status_code'] or last['error']} in {last['duration_ms']} ms" if last else ""
        )
        print(
            f"{m['webhook_id']}  {m['created_at']}  {m['event_type']:24}  {m['state']:9}  "
            f"{m['attempts']} attempt(s)  {answer}"
        )
    print(body["message"])
    return 0


def _replay(args: argparse.Namespace) -> int:
    request = {"webhook_id": args.webhook_id} if args.webhook_id else {"since": args.since}
    print(call(args, "POST", f"{BASE}{args.id}/replay/", json=request)["message"])
    return 0


def add_commands(sub: Any) -> None:
    hooks = sub.add_parser("webhooks", help="outbound webhook endpoints (docs/webhooks.md)")
    verbs = hooks.add_subparsers(dest="verb", required=True)

    def verb(name: str, help_: str, func: Any, with_id: bool = True) -> argparse.ArgumentParser:
        p = verbs.add_parser(name, help=help_)
        if with_id:
            p.add_argument("id", help="the endpoint's id")
        add_target_options(p)
        p.set_defaults(func=func)
        return p

    create = verb("create", "register an endpoint (its secret is shown once)", _create, False)
    create.add_argument("endpoint_url", metavar="URL", help="where to send the events")
    create.add_argument("--events", nargs="+", default=["*"], help="event types (default: *)")
    create.add_argument("--description", default="")
    verb("list", "the endpoints (the admin: everyone's)", _list, False)
    verb("show", "one endpoint", _show)
    update = verb("update", "change an endpoint's URL or events", _update)
    update.add_argument("--to", dest="new_url", metavar="URL", help="the new URL")
    update.add_argument("--events", nargs="+")
    verb("enable", "enable an endpoint (its waiting messages go out)", _enable)
    verb("disable", "disable an endpoint", _disable)
    verb("delete", "delete an endpoint and its messages", _delete)
    verb("rotate", "a new secret; the old one signs beside it for the grace period", _rotate)
    messages = verb("messages", "messages sent to an endpoint, with their attempts", _messages)
    messages.add_argument("--state", choices=["pending", "delivered", "failed"])
    messages.add_argument("--page", type=int, default=1)
    messages.add_argument("--limit", type=int, default=20)
    messages.add_argument("--json", action="store_true")
    replay = verb("replay", "send a message again, or every failed one since a time", _replay)
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--webhook-id")
    which.add_argument("--since", help="ISO 8601, e.g. 2026-12-01T00:00:00Z")


def _enable(args: argparse.Namespace) -> int:
    return _patch(args, {"disabled": False})


def _disable(args: argparse.Namespace) -> int:
    return _patch(args, {"disabled": True})
