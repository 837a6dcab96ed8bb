"""The ``tidings`` command: ``up``, ``run``, ``migrate``, ``openapi`` and ``mail`` here; the
admin API (``admin``), ``categories``/``preferences`` (``preferences``), ``send``/``status``
(``send``), ``doctor`` and ``vapid`` in their modules of this package, and ``bench`` in
:mod:`tidings.bench`."""

from __future__ import annotations

import argparse
import json
import sys

from tidings.core.settings import SERVICES, TidingsSettings


def _up(args: argparse.Namespace) -> int:
    from tidings import runner

    if TidingsSettings().embedded:
        if args.replicas:
            raise runner.ConfigurationError(
                "--replicas needs the real infrastructure (TIDINGS_DATABASE_URL, "
                "TIDINGS_AMQP_URL, TIDINGS_REDIS_URL): embedded, every service is in one process"
            )
        runner.run_embedded(reset=args.reset)
    else:
        if args.reset:
            raise runner.ConfigurationError(
                "--reset is for the embedded default: on the real infrastructure the data is "
                "in PostgreSQL, and nothing is kept in TIDINGS_DATA_DIR"
            )
        from tidings import supervisor

        supervisor.run_supervised(args.replicas)
    return 0


def _run(args: argparse.Namespace) -> int:
    from tidings import runner

    runner.run_service(args.service)
    return 0


def _migrate(_: argparse.Namespace) -> int:
    from tidings import runner

    print(runner.migrate_all())
    return 0


def _openapi(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tidings import runner

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for service, schema in runner.openapi_schemas().items():
        (out / f"{service}.json").write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(SERVICES)} schemas to {out}")
    return 0


def _mail(args: argparse.Namespace) -> int:
    from tidings.mailcapture import read_mailbox

    messages = read_mailbox(TidingsSettings().data_dir / "mailbox")
    if args.json:
        print(json.dumps(messages, indent=2))
    elif args.show is not None:
        if not 1 <= args.show <= len(messages):
            print(f"no message {args.show}; the mailbox has {len(messages)}", file=sys.stderr)
            return 1
        m = messages[args.show - 1]
        for key in ("date", "from", "to", "subject", "message_id", "request_id", "correlation_id"):
            print(f"{key}: {m[key]}")
        print(f"\n{m['text'] or ''}")
    else:
        for i, m in enumerate(messages, 1):
            print(f"{i:4}  {m['date']}  {m['to']}  {m['subject']}")
        print(f"{len(messages)} message(s)")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tidings", description="Tidings: a distributed notification system."
    )
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser(
        "up",
        help="run every service (embedded in one process when no TIDINGS_*_URL is set)",
    )
    up.add_argument(
        "--replicas",
        metavar="SERVICE=N,...",
        help="how many processes of each service, e.g. email=2,gateway=2 (default: 1 each)",
    )
    up.add_argument(
        "--reset",
        action="store_true",
        help="embedded: start afresh (forget the kept keys, the SQLite data and the mail)",
    )
    up.set_defaults(func=_up)
    run = sub.add_parser("run", help="run one service")
    run.add_argument("service", choices=SERVICES)
    run.set_defaults(func=_run)
    sub.add_parser("migrate", help="create or upgrade every service's schema").set_defaults(
        func=_migrate
    )
    openapi = sub.add_parser("openapi", help="export every service's OpenAPI schema")
    openapi.add_argument("--out", default="docs/openapi", help="folder (default: docs/openapi)")
    openapi.set_defaults(func=_openapi)
    from tidings import bench
    from tidings.cli import admin, broadcasts, doctor, preferences, send, vapid, webhooks

    send.add_commands(sub)
    doctor.add_commands(sub)
    admin.add_commands(sub)
    preferences.add_commands(sub)
    vapid.add_commands(sub)
    webhooks.add_commands(sub)
    broadcasts.add_commands(sub)
    bench.add_commands(sub)
    mail = sub.add_parser("mail", help="show the mail the built-in capture server received")
    mail.add_argument("--show", type=int, metavar="N", help="print message N in full")
    mail.add_argument("--json", action="store_true", help="every message as JSON")
    mail.set_defaults(func=_mail)
    return p


def main(argv: list[str] | None = None) -> int:
    from tidings.runner import ConfigurationError

    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigurationError as exc:
        print(f"tidings: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
