"""``tidings broadcasts bench``: the fan-out's benchmark, against a running Tidings.

Makes N users, a topic of them by the bulk calls (10,000 ids each), one broadcast to it,
and reports the 202's latency, the bulk calls' rate, the fan-out's creation rate and the
resident memory of the gateway doing the fan-out (sampled from /proc while it runs; the
gateway's pid from /health). The users are written straight into the users schema with
COPY (``--database-url``): the users API hashes a password with argon2 for each, hours for a
million; everything else goes over HTTP, as a client's would. Without ``--deliver`` the
users have email off, so the broadcast's notifications are made (and skipped) without
sending a million mails to the machine's capture server. See docs/broadcasts.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tidings.cli.gateway import admin_key
from tidings.core.settings import TidingsSettings

SEED_CHUNK = 50_000
BULK = 10_000
POLL_S = 2.0
SETTLE_S = 30.0
COUNTED = ("pending", "delivered", "failed", "skipped", "cancelled")
MILESTONE_FIRST = 10_000
ANALYZED = (
    "users.users",
    "gateway.topic_subscribers",
    "gateway.notifications",
    "gateway.notification_events",
    "gateway.outbox",
)


def _growth(milestones: list[dict[str, Any]], low: int, high: int) -> str | None:
    """The resident memory at ``high`` made against ``low`` (None: not both reached)."""
    at_low = next((m["gateway_rss_mb"] for m in milestones if m["created"] >= low), None)
    at_high = next((m["gateway_rss_mb"] for m in milestones if m["created"] >= high), None)
    if at_low is None or at_high is None:
        return None
    return f"{(at_high / at_low - 1) * 100:+.1f} %"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def seed(database_url: str, n: int, tag: str, deliver: bool) -> list[uuid.UUID]:
    prefs = json.dumps({"email": deliver, "push": False})
    now = dt.datetime.now(dt.UTC)
    ids: list[uuid.UUID] = []
    conn = await asyncpg.connect(database_url)
    try:
        for start in range(0, n, SEED_CHUNK):
            rows = []
            for i in range(start, min(n, start + SEED_CHUNK)):
                user_id = uuid.uuid4()
                ids.append(user_id)
                address = f"{tag}-{i}@example.com"
                rows.append(
                    (user_id, f"User {i}", address, address, "-", None, prefs, "en", now, now)
                )
            await conn.copy_records_to_table(
                "users",
                schema_name="users",
                records=rows,
                columns=[
                    "id",
                    "name",
                    "email",
                    "email_normalized",
                    "password_hash",
                    "push_token",
                    "preferences",
                    "language",
                    "created_at",
                    "updated_at",
                ],
            )
    finally:
        await conn.close()
    return ids


async def analyze_without_autovacuum(database_url: str) -> bool:
    """A server with autovacuum off never gathers the statistics of the gateway's tables,
    which the fan-out makes grow from empty: its planner then scans every notification for
    each request-id look-up (the rate fell from 1,600 to 300 a second by 60,000 made).
    ANALYZE them once, as autovacuum would have; True if it had to."""
    conn = await asyncpg.connect(database_url)
    try:
        if await conn.fetchval("SHOW autovacuum") != "off":
            return False
        for table in ANALYZED:
            await conn.execute(f"ANALYZE {table}")
        return True
    finally:
        await conn.close()


async def _check(answer: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = answer.json()
    if not body.get("success"):
        raise SystemExit(f"tidings: {answer.request.url}: {answer.status_code} {body.get('error')}")
    return body


async def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = TidingsSettings()
    url = (args.url or settings.url_of("gateway")).rstrip("/")
    key = admin_key(settings, args.key)
    n = args.subscribers
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as gw:
        # Degraded (a 503) still says whose it is.
        pid = (await gw.get("/health")).json()["data"]["pid"]
        started = time.monotonic()
        ids = await seed(args.database_url, n, tag, args.deliver)
        seeded_s = time.monotonic() - started
        await _check(await gw.post("/api/v1/topics/", json={"key": tag, "name": tag}))
        started = time.monotonic()
        for start in range(0, n, BULK):
            chunk = [str(u) for u in ids[start : start + BULK]]
            await _check(
                await gw.post(f"/api/v1/topics/{tag}/subscribers/", json={"user_ids": chunk})
            )
        subscribe_s = time.monotonic() - started
        del ids
        template = {
            "code": tag,
            "channel": "email",
            "language": "en",
            "subject": "News for {{ name }}",
            "body": "<p>Hello {{ name }}: {{ link }}</p>",
        }
        await _check(await gw.post("/api/v1/templates/", json=template))
        rss_before = rss_mb(pid)
        body = {
            "topic_key": tag,
            "notification_type": "email",
            "template_code": tag,
            "variables": {"name": "there", "link": "https://example.com/news"},
            "request_id": tag,
        }
        started = time.monotonic()
        answer = await _check(await gw.post("/api/v1/broadcasts/", json=body))
        accepted_ms = (time.monotonic() - started) * 1000
        broadcast_id = answer["data"]["broadcast_id"]
        peak = rss_before
        progress: dict[str, Any] = {}
        # The resident memory and the creation rate as the fan-out passes 10,000, 100,000,
        # 1,000,000, ... notifications made (the acceptance compares 1,000,000 with 100,000).
        milestones: list[dict[str, Any]] = []
        mark = MILESTONE_FIRST
        analyzed: bool | None = None
        while time.monotonic() - started < args.timeout:
            rss = rss_mb(pid)
            peak = max(peak, rss)
            polled = await gw.get(f"/api/v1/broadcasts/{broadcast_id}/")
            if polled.status_code == 503:  # said to wait: the next poll
                await asyncio.sleep(POLL_S)
                continue
            progress = (await _check(polled))["data"]
            if analyzed is None and progress["created"] > 0:
                analyzed = await analyze_without_autovacuum(args.database_url)
            elapsed = time.monotonic() - started
            while progress["created"] >= mark:
                milestones.append(
                    {
                        "created": progress["created"],
                        "at_s": round(elapsed, 1),
                        "created_per_s": round(progress["created"] / elapsed),
                        "gateway_rss_mb": round(rss, 1),
                    }
                )
                mark *= 10
            if progress["status"] != "running":
                break
            await asyncio.sleep(POLL_S)
        fanout_s = time.monotonic() - started
        # The progress counts are kept a few seconds (gateway.broadcasts): the final ones
        # once they add up to what was made.
        settle_until = time.monotonic() + SETTLE_S
        while progress.get("status") == "finished" and time.monotonic() < settle_until:
            if sum(progress[k] for k in COUNTED) == progress["created"]:
                break
            await asyncio.sleep(POLL_S)
            polled = await gw.get(f"/api/v1/broadcasts/{broadcast_id}/")
            if polled.status_code == 200:
                progress = (await _check(polled))["data"]
    return {
        "subscribers": n,
        "seed_s": round(seeded_s, 1),
        "subscribe_calls_per_s": round(n / BULK / subscribe_s, 2),
        "subscribers_added_per_s": round(n / subscribe_s),
        "accepted_ms": round(accepted_ms, 1),
        "fanout_s": round(fanout_s, 1),
        "created_per_s": round(progress.get("created", 0) / fanout_s),
        "gateway_rss_mb_before": round(rss_before, 1),
        "gateway_rss_mb_peak": round(peak, 1),
        "milestones": milestones,
        "analyzed_without_autovacuum": analyzed,
        "rss_growth_100k_to_1m": _growth(milestones, 100_000, 1_000_000),
        "progress": progress,
    }


def main(args: argparse.Namespace) -> int:
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    return 0 if result["progress"].get("status") == "finished" else 1
