"""``tidings topics …`` and ``tidings broadcasts …``: topics, their subscribers and broadcasts
from a shell, as the admin (see :mod:`tidings.cli.gateway` for where the gateway is and the
key); ``tidings broadcasts bench`` is the fan-out's benchmark (:mod:`tidings.bench.broadcast`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tidings.cli.gateway import add_target_options, call

CHUNK = 10_000  # user ids per bulk call, the API's most


def _ids(args: argparse.Namespace) -> list[str]:
    """The user ids on the command line, or one a line from --file ('-': stdin)."""
    ids = list(args.user_ids or [])
    if args.file:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        ids += [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise SystemExit("tidings: no user ids (give them, or --file)")
    return ids


def _topic_create(args: argparse.Namespace) -> int:
    data = call(args, "POST", "/api/v1/topics/", json={"key": args.topic_key, "name": args.name})[
        "data"
    ]
    print(f"topic {data['key']} ({data['topic_id']})")
    return 0


def _topic_list(args: argparse.Namespace) -> int:
    params = {"user_id": args.user} if args.user else {}
    for t in call(args, "GET", "/api/v1/topics/", params=params)["data"]:
        print(f"{t['key']:30}  {t['name']}")
    return 0


def _topic_show(args: argparse.Namespace) -> int:
    print(json.dumps(call(args, "GET", f"/api/v1/topics/{args.topic_key}/")["data"], indent=2))
    return 0


def _subscribe(args: argparse.Namespace, remove: bool) -> int:
    ids = _ids(args)
    path = f"/api/v1/topics/{args.topic_key}/subscribers/" + ("remove/" if remove else "")
    changed = 0
    for start in range(0, len(ids), CHUNK):
        body = {"user_ids": ids[start : start + CHUNK]}
        changed += call(args, "POST", path, json=body)["data"]["changed"]
    print(f"{changed} of {len(ids)} {'removed' if remove else 'added'}")
    return 0


def _subscribers(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.after:
        params["after"] = args.after
    data = call(args, "GET", f"/api/v1/topics/{args.topic_key}/subscribers/", params=params)["data"]
    for s in data["subscribers"]:
        print(f"{s['user_id']}  {s['subscribed_at']}")
    if data["next_after"]:
        print(f"next page: --after {data['next_after']}")
    return 0


def _broadcast_send(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "topic_key": args.topic,
        "notification_type": args.channel,
        "template_code": args.template,
        "variables": json.loads(args.variables),
        "request_id": args.request_id,
        "priority": args.priority,
    }
    if args.send_at:
        body["send_at"] = args.send_at
    answer = call(args, "POST", "/api/v1/broadcasts/", json=body)
    print(f"{answer['data']['broadcast_id']}  {answer['message']}")
    return 0


def _line(b: dict[str, Any]) -> str:
    return (
        f"{b['broadcast_id']}  {b['status']:9}  {b['topic_key']:20}  "
        f"recipients {b['recipients']}  created {b['created']}  delivered {b['delivered']}  "
        f"failed {b['failed']}  skipped {b['skipped']}  cancelled {b['cancelled']}"
    )


def _broadcast_list(args: argparse.Namespace) -> int:
    for b in call(args, "GET", "/api/v1/broadcasts/")["data"]:
        print(_line(b))
    return 0


def _broadcast_show(args: argparse.Namespace) -> int:
    data = call(args, "GET", f"/api/v1/broadcasts/{args.id}/")["data"]
    print(json.dumps(data, indent=2) if args.json else _line(data))
    return 0


def _broadcast_cancel(args: argparse.Namespace) -> int:
    print(_line(call(args, "DELETE", f"/api/v1/broadcasts/{args.id}/")["data"]))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from tidings.bench.broadcast import main as bench_main

    return bench_main(args)


def _with_ids(p: argparse.ArgumentParser) -> None:
    p.add_argument("topic_key", metavar="KEY")
    p.add_argument("user_ids", nargs="*")
    p.add_argument("--file", help="user ids one a line ('-': stdin)")
    add_target_options(p)


def add_commands(sub: Any) -> None:
    topics = sub.add_parser("topics", help="topics and their subscribers")
    verbs = topics.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("create", help="a new topic")
    p.add_argument("topic_key", metavar="KEY")
    p.add_argument("name")
    p.set_defaults(func=_topic_create)
    add_target_options(p)
    p = verbs.add_parser("list", help="the topics (with --user: that user's)")
    p.add_argument("--user")
    p.set_defaults(func=_topic_list)
    add_target_options(p)
    p = verbs.add_parser("show", help="one topic and its subscriber count")
    p.add_argument("topic_key", metavar="KEY")
    p.set_defaults(func=_topic_show)
    add_target_options(p)
    p = verbs.add_parser("subscribe", help="add subscribers (10,000 per call)")
    _with_ids(p)
    p.set_defaults(func=lambda a: _subscribe(a, remove=False))
    p = verbs.add_parser("unsubscribe", help="remove subscribers")
    _with_ids(p)
    p.set_defaults(func=lambda a: _subscribe(a, remove=True))
    p = verbs.add_parser("subscribers", help="a page of a topic's subscribers")
    p.add_argument("topic_key", metavar="KEY")
    p.add_argument("--after")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_subscribers)
    add_target_options(p)

    broadcasts = sub.add_parser("broadcasts", help="broadcasts to a topic's subscribers")
    verbs = broadcasts.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("send", help="broadcast to a topic")
    p.add_argument("topic")
    p.add_argument("template")
    p.add_argument("--request-id", required=True)
    p.add_argument("--channel", choices=["email", "push"], default="email")
    p.add_argument("--variables", default='{"name": "there", "link": "https://example.com"}')
    p.add_argument("--priority", type=int, default=5)
    p.add_argument("--send-at")
    p.set_defaults(func=_broadcast_send)
    add_target_options(p)
    p = verbs.add_parser("list", help="the newest broadcasts with their progress")
    p.set_defaults(func=_broadcast_list)
    add_target_options(p)
    p = verbs.add_parser("show", help="one broadcast's progress")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_broadcast_show)
    add_target_options(p)
    p = verbs.add_parser("cancel", help="stop a broadcast, withdraw what has not gone")
    p.add_argument("id")
    p.set_defaults(func=_broadcast_cancel)
    add_target_options(p)
    p = verbs.add_parser(
        "bench", help="benchmark the fan-out: a topic of N subscribers, one broadcast"
    )
    p.add_argument("--subscribers", type=int, default=100_000)
    p.add_argument("--database-url", required=True, help="where to seed the users (PostgreSQL)")
    p.add_argument("--deliver", action="store_true", help="users with email on (sent)")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.set_defaults(func=_bench)
    add_target_options(p)
