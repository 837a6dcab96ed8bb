"""``tidings dead-letters``, ``tidings api-keys`` and ``tidings suppressions``: the gateway's
admin API from a shell (see :mod:`tidings.cli.gateway` for where it is and the key)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tidings.cli.gateway import call
from tidings.core.auth import SCOPES


def _list(args: argparse.Namespace) -> int:
    params = {"page": args.page, "limit": args.limit}
    if args.queue:
        params["source_queue"] = args.queue
    if args.reason:
        params["reason_contains"] = args.reason
    body = call(args, "GET", "/api/v1/admin/dead-letters/", params=params)
    if args.json:
        print(json.dumps(body["data"], indent=2))
        return 0
    for d in body["data"]:
        replayed = f"replayed {d['replay_count']}x" if d["replay_count"] else "not replayed"
        print(
            f"{d['dead_letter_id']:6}  {d['created_at']}  {d['source_queue']:12}  "
            f"{d['notification_id']}  {replayed}  {d['reason']}"
        )
    meta = body["meta"]
    print(f"page {meta['page']} of {meta['total_pages']}; {meta['total']} dead letter(s)")
    return 0


def _show(args: argparse.Namespace) -> int:
    body = call(args, "GET", f"/api/v1/admin/dead-letters/{args.id}/")
    print(json.dumps(body["data"], indent=2))
    return 0


def _replay(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"all": args.all}
    if args.ids:
        request["dead_letter_ids"] = args.ids
    if args.queue:
        request["source_queue"] = args.queue
    if args.reason:
        request["reason_contains"] = args.reason
    body = call(args, "POST", "/api/v1/admin/dead-letters/replay/", json=request)
    for r in body["data"]:
        print(f"{r['dead_letter_id']:6}  {r['outcome']:8}  {r['notification_id']}  {r['detail']}")
    print(body["message"])
    return 0


def _key_create(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"name": args.name, "scopes": args.scope}
    if args.rate_per_s is not None:
        request["rate_per_s"] = args.rate_per_s
    if args.burst is not None:
        request["burst"] = args.burst
    data = call(args, "POST", "/api/v1/admin/api-keys/", json=request)["data"]
    print(f"key (shown this once): {data['key']}")
    print(f"id: {data['api_key_id']}  scopes: {', '.join(data['scopes'])}")
    return 0


def _key_list(args: argparse.Namespace) -> int:
    for k in call(args, "GET", "/api/v1/admin/api-keys/")["data"]:
        state = f"revoked {k['revoked_at']}" if k["revoked_at"] else "active"
        print(f"{k['api_key_id']}  {k['name']:20}  {','.join(k['scopes']):40}  {state}")
    return 0


def _key_revoke(args: argparse.Namespace) -> int:
    data = call(args, "DELETE", f"/api/v1/admin/api-keys/{args.id}/")["data"]
    print(f"revoked {data['api_key_id']} ({data['name']})")
    return 0


def _sup_list(args: argparse.Namespace) -> int:
    body = call(
        args, "GET", "/api/v1/admin/suppressions/", params={"page": args.page, "limit": args.limit}
    )
    for r in body["data"]:
        print(f"{r['address']:40}  {r['source']:10}  {r['created_at']}  {r['reason']}")
    meta = body["meta"]
    print(f"page {meta['page']} of {meta['total_pages']}; {meta['total']} suppressed")
    return 0


def _sup_add(args: argparse.Namespace) -> int:
    data = call(
        args,
        "POST",
        "/api/v1/admin/suppressions/",
        json={"address": args.address, "reason": args.reason},
    )["data"]
    print(f"suppressed {data['address']} ({data['reason']})")
    return 0


def _sup_remove(args: argparse.Namespace) -> int:
    print(call(args, "DELETE", f"/api/v1/admin/suppressions/{args.address}/")["message"])
    return 0


def add_commands(sub: Any) -> None:
    sup = sub.add_parser("suppressions", help="addresses never sent to (bounces, complaints)")
    sup_verbs = sup.add_subparsers(dest="verb", required=True)
    sup_list = sup_verbs.add_parser("list", help="suppressed addresses, newest first")
    sup_list.add_argument("--page", type=int, default=1)
    sup_list.add_argument("--limit", type=int, default=50)
    sup_list.set_defaults(func=_sup_list)
    sup_add = sup_verbs.add_parser("add", help="suppress an address")
    sup_add.add_argument("address")
    sup_add.add_argument("--reason", default="added by an admin")
    sup_add.set_defaults(func=_sup_add)
    sup_remove = sup_verbs.add_parser("remove", help="lift a suppression")
    sup_remove.add_argument("address")
    sup_remove.set_defaults(func=_sup_remove)

    keys = sub.add_parser("api-keys", help="API keys of client applications")
    key_verbs = keys.add_subparsers(dest="verb", required=True)
    create = key_verbs.add_parser("create", help="a new key (shown once)")
    create.add_argument("name")
    create.add_argument("--scope", action="append", required=True, choices=SCOPES)
    create.add_argument("--rate-per-s", type=float, help="this key's rate limit")
    create.add_argument("--burst", type=int, help="this key's burst")
    create.set_defaults(func=_key_create)
    key_verbs.add_parser("list", help="every key").set_defaults(func=_key_list)
    revoke = key_verbs.add_parser("revoke", help="revoke a key")
    revoke.add_argument("id")
    revoke.set_defaults(func=_key_revoke)

    dl = sub.add_parser("dead-letters", help="list, inspect and replay dead letters")
    verbs = dl.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("list", help="dead letters, newest first")
    ls.add_argument("--queue", help="only from this queue (email.queue, push.queue, …)")
    ls.add_argument("--reason", help="only those whose reason contains this text")
    ls.add_argument("--page", type=int, default=1)
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    show = verbs.add_parser("show", help="one dead letter in full")
    show.add_argument("id", type=int)
    show.set_defaults(func=_show)
    replay = verbs.add_parser("replay", help="replay dead letters not replayed yet")
    replay.add_argument("ids", type=int, nargs="*", help="these dead letters")
    replay.add_argument("--all", action="store_true", help="every one (with the filters below)")
    replay.add_argument("--queue", help="only from this queue")
    replay.add_argument("--reason", help="only those whose reason contains this text")
    replay.set_defaults(func=_replay)
