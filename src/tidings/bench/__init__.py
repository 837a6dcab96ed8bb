"""``tidings bench``: a load generator and end-to-end benchmark. It talks to Tidings over HTTP
and receives its mail over SMTP, like any client and mail server would; it imports no service.
See docs/performance.md."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def _bench(args: argparse.Namespace) -> int:
    from tidings.bench.report import write_outputs
    from tidings.bench.runner import BenchConfig, run
    from tidings.bench.sink import on_uvloop

    if args.target and not args.admin_key:
        print("tidings bench: --target needs --admin-key (or TIDINGS_ADMIN_API_KEY)")
        return 2
    if args.webhook_url and (args.webhook_receiver or args.webhook_down or args.webhook_slow):
        print("tidings bench: --webhook-url or a receiver of the bench's own, not both")
        return 2
    if args.webhook_down and args.webhook_slow:
        print("tidings bench: --webhook-down or --webhook-slow, not both")
        return 2
    if args.target and (args.database_url or args.amqp_url or args.redis_url):
        print(
            "tidings bench: --database-url/--amqp-url/--redis-url start a stack; not with --target"
        )
        return 2
    config = BenchConfig(
        n=args.n,
        concurrency=args.c,
        rate=args.rate,
        users=args.users,
        target=args.target,
        admin_key=args.admin_key,
        smtp_port=args.smtp_port,
        database_url=args.database_url,
        amqp_url=args.amqp_url,
        redis_url=args.redis_url,
        timeout_s=args.timeout,
        settle_s=args.settle,
        stack_pids=list(args.stack_pid or []),
        log_file=Path(args.report).with_name("tidings-up.log"),
        connections=args.connections,
        curve=args.curve,
        curve_step_s=args.curve_step,
        curve_max=args.curve_max,
        profile_dir=Path(args.profile) if args.profile else None,
        warmup=args.warmup,
        dkim_key=Path(args.dkim_key).read_text() if args.dkim_key else None,
        webhook_url=args.webhook_url,
        webhook_receiver=bool(args.webhook_receiver or args.webhook_down or args.webhook_slow),
        webhook_down=args.webhook_down,
        webhook_slow_ms=args.webhook_slow or 0,
    )
    result = on_uvloop(run(config))
    return write_outputs(result, Path(args.report), Path(args.plot) if args.plot else None)


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark Tidings end to end: send N notifications, receive them over SMTP",
        description=(
            "Start `tidings up` (or use --target), create users and a template, send N email "
            "notifications, receive them on an SMTP sink in this process, and report throughput, "
            "latency, losses, duplicates and CPU. See docs/performance.md."
        ),
    )
    p.add_argument("-n", type=int, default=1000, help="notifications to send (default: 1000)")
    p.add_argument("-c", type=int, default=50, help="closed loop: concurrent clients (default: 50)")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        metavar="R",
        help="open loop: offer R requests/s instead of a closed loop",
    )
    p.add_argument(
        "--curve",
        action="store_true",
        help="open-loop latency curve: offer 100, 200, 400, ... requests/s, --curve-step "
        "seconds each, until accepted or delivered falls below 90%% of the offer",
    )
    p.add_argument(
        "--curve-step", type=float, default=10.0, help="seconds per rate of --curve (default: 10)"
    )
    p.add_argument(
        "--curve-max", type=float, default=6400.0, help="highest rate of --curve (default: 6400)"
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=0,
        metavar="N",
        help="send N notifications first at the same load (--curve: at 100/s) and report them "
        "apart: the figures are then of a stack past its cold start; their losses and "
        "duplicates still count (default: 0)",
    )
    p.add_argument(
        "--connections",
        type=int,
        default=None,
        help="keep-alive HTTP connections; more requests in flight than connections are "
        "pipelined (default: -c in the closed loop, max(64, R/4) in the open loop)",
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        default=None,
        help="py-spy record (raw format) of every Tidings process, the load generator and the "
        "sink from 10%% to 90%% of the answers, and a summary (DIR/summary.md)",
    )
    p.add_argument("--users", type=int, default=100, help="recipients, cycled (default: 100)")
    p.add_argument(
        "--database-url",
        default=os.environ.get("TIDINGS_DATABASE_URL"),
        help="PostgreSQL for the started stack (default: $TIDINGS_DATABASE_URL)",
    )
    p.add_argument(
        "--amqp-url",
        default=os.environ.get("TIDINGS_AMQP_URL"),
        help="RabbitMQ for the started stack (default: $TIDINGS_AMQP_URL)",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("TIDINGS_REDIS_URL"),
        help="Redis for the started stack (default: $TIDINGS_REDIS_URL); with none of the "
        "three, the stack is the embedded default",
    )
    p.add_argument(
        "--target",
        metavar="URL",
        help="use a running stack's gateway instead of starting one (its TIDINGS_SMTP_URL must "
        "be smtp://<this host>:<--smtp-port>)",
    )
    p.add_argument(
        "--admin-key",
        default=os.environ.get("TIDINGS_ADMIN_API_KEY"),
        help="the target's admin key (default: $TIDINGS_ADMIN_API_KEY)",
    )
    p.add_argument(
        "--smtp-port",
        type=int,
        default=0,
        help="the SMTP sink's port (default: a free one; with --target, say 2525)",
    )
    p.add_argument(
        "--stack-pid",
        type=int,
        action="append",
        metavar="PID",
        help="with --target: a process of the stack to measure CPU of (with its children); "
        "repeatable",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds without a new arrival after which the mail still awaited counts as lost "
        "(default: 120)",
    )
    p.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="seconds to keep listening after the last expected message, for duplicates",
    )
    p.add_argument(
        "--dkim-key",
        metavar="PEM",
        help="a started stack signs every email with this DKIM key (RSA or Ed25519 PEM file)",
    )
    p.add_argument(
        "--webhook-url",
        metavar="URL",
        help="register an outbound webhook endpoint subscribed to every event before the run "
        "(run it once with a receiver answering, once with it down: docs/webhooks.md)",
    )
    p.add_argument(
        "--webhook-receiver",
        action="store_true",
        help="run a webhook receiver (a process of its own, answering 204), register an "
        "endpoint subscribed to every event pointing at it, wait for every delivered "
        "notification's events after the mail, and count them by webhook-id (lost, duplicated)",
    )
    p.add_argument(
        "--webhook-down",
        action="store_true",
        help="as --webhook-receiver, the receiver answering 503 to every request (down): the "
        "run's figures with a receiver that is down",
    )
    p.add_argument(
        "--webhook-slow",
        type=int,
        metavar="MS",
        help="as --webhook-receiver, the receiver answering each request after MS ms (slow); "
        "the run does not wait for the events after the mail",
    )
    p.add_argument(
        "--report",
        default="artifacts/bench/report.md",
        help="Markdown report; its JSON beside it (report.json)",
    )
    p.add_argument("--plot", default="artifacts/bench/report.png", help="PNG plot ('' for none)")
    p.set_defaults(func=_bench)
