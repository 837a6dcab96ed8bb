"""``tidings categories`` (the templates service's categories, through the gateway) and
``tidings preferences`` (a user's choices per channel and category, time zone and quiet
hours): the API from a shell, as the admin (see :mod:`tidings.cli.gateway`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tidings.cli.gateway import add_target_options, call

CATEGORIES = "/api/v1/templates/categories/"
ON_OFF = {"on": True, "off": False, "default": None}


def _cat_list(args: argparse.Namespace) -> int:
    body = call(args, "GET", CATEGORIES, params={"page": args.page, "limit": args.limit})
    for c in body["data"]:
        flag = "critical" if c["critical"] else "-"
        print(f"{c['key']:24}  {flag:8}  {c['description']}")
    meta = body["meta"]
    print(f"page {meta['page']} of {meta['total_pages']}; {meta['total']} categories")
    return 0


def _cat_create(args: argparse.Namespace) -> int:
    request = {"key": args.category, "description": args.description, "critical": args.critical}
    print(call(args, "POST", CATEGORIES, json=request)["message"])
    return 0


def _cat_update(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {}
    if args.description is not None:
        request["description"] = args.description
    if args.critical is not None:
        request["critical"] = args.critical == "yes"
    print(call(args, "PATCH", f"{CATEGORIES}{args.category}/", json=request)["message"])
    return 0


def _cat_delete(args: argparse.Namespace) -> int:
    print(call(args, "DELETE", f"{CATEGORIES}{args.category}/")["message"])
    return 0


def _show(args: argparse.Namespace) -> int:
    user = call(args, "GET", f"/api/v1/users/{args.user_id}/")["data"]
    shown = {k: user.get(k) for k in ("preferences", "time_zone", "quiet_hours")}
    print(json.dumps(shown, indent=2))
    return 0


def change_of(args: argparse.Namespace) -> dict[str, Any]:
    """The PATCH body the options ask for (only what they name changes)."""
    preferences: dict[str, Any] = {}
    for channel in ("email", "push"):
        if getattr(args, channel) is not None:
            preferences[channel] = ON_OFF[getattr(args, channel)]
    categories: dict[str, dict[str, bool | None]] = {}
    for item in args.category or []:
        key, _, rest = item.partition("=")
        channel, _, state = rest.partition(":")
        if not key or channel not in ("email", "push") or state not in ON_OFF:
            raise SystemExit(f"tidings: --category {item!r}: KEY=email|push:on|off|default")
        categories.setdefault(key, {})[channel] = ON_OFF[state]
    if categories:
        preferences["categories"] = categories
    change: dict[str, Any] = {"preferences": preferences} if preferences else {}
    if args.time_zone is not None:
        change["time_zone"] = None if args.time_zone == "UTC" else args.time_zone
    if args.quiet is not None:
        if args.quiet == "none":
            change["quiet_hours"] = None
        else:
            start, _, end = args.quiet.partition("-")
            days = args.days.split(",") if args.days else None
            change["quiet_hours"] = {"start": start, "end": end, "days": days}
    return change


def _set(args: argparse.Namespace) -> int:
    change = change_of(args)
    if not change:
        raise SystemExit("tidings: nothing to change (see tidings preferences set --help)")
    data = call(args, "PATCH", f"/api/v1/users/{args.user_id}/", json=change)["data"]
    shown = {k: data.get(k) for k in ("preferences", "time_zone", "quiet_hours")}
    print(json.dumps(shown, indent=2))
    return 0


def add_commands(sub: Any) -> None:
    cats = sub.add_parser("categories", help="categories of notifications (templates name one)")
    verbs = cats.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("list", help="every category")
    ls.add_argument("--page", type=int, default=1)
    ls.add_argument("--limit", type=int, default=100)
    ls.set_defaults(func=_cat_list)
    create = verbs.add_parser("create", help="a new category")
    create.add_argument("category", metavar="KEY")
    create.add_argument("--description", required=True)
    create.add_argument("--critical", action="store_true", help="cannot be turned off")
    create.set_defaults(func=_cat_create)
    update = verbs.add_parser("update", help="change a category")
    update.add_argument("category", metavar="KEY")
    update.add_argument("--description")
    update.add_argument("--critical", choices=("yes", "no"))
    update.set_defaults(func=_cat_update)
    delete = verbs.add_parser("delete", help="delete a category no template names")
    delete.add_argument("category", metavar="KEY")
    delete.set_defaults(func=_cat_delete)

    prefs = sub.add_parser("preferences", help="a user's preferences, time zone, quiet hours")
    pverbs = prefs.add_subparsers(dest="verb", required=True)
    show = pverbs.add_parser("show", help="a user's preferences")
    show.add_argument("user_id")
    show.set_defaults(func=_show)
    change = pverbs.add_parser("set", help="change a user's preferences (what is named)")
    change.add_argument("user_id")
    change.add_argument("--email", choices=("on", "off"), help="the email channel")
    change.add_argument("--push", choices=("on", "off"), help="the push channel")
    change.add_argument(
        "--category",
        action="append",
        metavar="KEY=CHANNEL:on|off|default",
        help="a category's channel, e.g. marketing=email:off (repeatable)",
    )
    change.add_argument("--time-zone", help="an IANA name, e.g. Europe/Berlin (UTC: none)")
    change.add_argument("--quiet", metavar="HH:MM-HH:MM|none", help="quiet hours, or none")
    change.add_argument("--days", help="the nights they start, e.g. mon,tue (default: all)")
    change.set_defaults(func=_set)
    for p in (ls, create, update, delete, show, change):
        add_target_options(p)
