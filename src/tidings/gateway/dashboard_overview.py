"""The overview: is it healthy right now. Cards of every status, and charts of the last hour
per minute (notifications by status and by channel, accept and end-to-end latency
percentiles, queue depths, retries and dead letters) with the breakers' states and the
queues' consumers. The page polls /dashboard/api/overview every few seconds and the charts
(uPlot, vendored in gateway/static/) draw what it answers.

Every figure is the system's, however many gateway replicas there are: the counts come from
the database (by the created_at index), the latencies, queue readings and breakers from
every replica's rows in dashboard_samples (gateway.dashboard_samples), added up."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse, Response
from sqlalchemy import ColumnElement, Integer, cast, func, select

from tidings.core.db import Database
from tidings.core.status import Status
from tidings.gateway.dashboard_base import HEADERS, JsonSession, Session, _page, dashboard_router
from tidings.gateway.dashboard_samples import add_up, quantile, samples_since
from tidings.gateway.dependencies import State
from tidings.gateway.models import DeadLetter, Notification, NotificationEvent
from tidings.gateway.pages import env
from tidings.gateway.state import GatewayState

router = dashboard_router()

MINUTES = 60
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
# The breaker gauge's values (core.metrics).
BREAKER_STATES = {0: "closed", 1: "half-open", 2: "open"}


def minute_of(db: Database, column: Any) -> ColumnElement[Any]:
    """Minutes since the epoch of a timestamp column, in SQL (PostgreSQL or SQLite)."""
    if db.is_postgres:
        return cast(func.floor(func.extract("epoch", column) / 60), Integer)
    return cast(func.strftime("%s", column), Integer) / 60


def _since(first: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(first * 60, dt.UTC)


async def _per_minute(db: Database, first: int) -> dict[str, dict[str, dict[int, int]]]:
    """Counts per minute of the last hour: notifications accepted by their status now and by
    channel, retries scheduled, dead letters stored."""
    since = _since(first)
    minute = minute_of(db, Notification.created_at).label("m")
    by: dict[str, dict[str, dict[int, int]]] = {
        "status": {s.value: {} for s in Status},
        "channel": {"email": {}, "push": {}},
        "errors": {"retries": {}, "dead letters": {}},
    }
    async with db.sessions() as session:
        rows = await session.execute(
            select(minute, Notification.status, Notification.notification_type, func.count())
            .where(Notification.created_at >= since)
            .group_by(minute, Notification.status, Notification.notification_type)
        )
        for m, status, channel, n in rows.all():
            for chart, key in (("status", status), ("channel", channel)):
                series = by[chart].setdefault(str(key), {})
                series[int(m)] = series.get(int(m), 0) + int(n)
        retried = minute_of(db, NotificationEvent.created_at).label("m")
        rows = await session.execute(
            select(retried, func.count())
            .join(Notification, Notification.id == NotificationEvent.notification_id)
            .where(Notification.created_at >= since - dt.timedelta(hours=1))
            .where(NotificationEvent.created_at >= since)
            .where(NotificationEvent.detail.like("retry in %"))
            .group_by(retried)
        )
        by["errors"]["retries"] = {int(m): int(n) for m, n in rows.all()}
        lettered = minute_of(db, DeadLetter.created_at).label("m")
        rows = await session.execute(
            select(lettered, func.count()).where(DeadLetter.created_at >= since).group_by(lettered)
        )
        by["errors"]["dead letters"] = {int(m): int(n) for m, n in rows.all()}
    return by


def _filled(series: Mapping[int, Any], minutes: list[int], empty: Any = 0) -> list[Any]:
    return [series.get(m, empty) for m in minutes]


async def _sampled(state: GatewayState, first: int, minutes: list[int]) -> dict[str, Any]:
    """The replicas' rows: latency percentiles per minute, queue depths per minute, and the
    newest reading of the queues and breakers."""
    await state.sampler.fresh()  # this replica's own figures as of now
    rows = await samples_since(state.db, first)
    by_minute: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_minute.setdefault(row.minute, []).append(row.payload)
    latency: dict[str, dict[str, list[float | None]]] = {}
    for name, scale in (("accept", 1000.0), ("e2e", 1.0)):
        summed = {m: add_up([p.get(name, {}) for p in by_minute.get(m, [])]) for m in minutes}
        latency[name] = {
            label: [
                None if (v := quantile(q, summed[m])) is None else round(v * scale, 3)
                for m in minutes
            ]
            for label, q in QUANTILES.items()
        }
        latency[name]["count"] = [round(max(summed[m].values(), default=0)) for m in minutes]
    depths: dict[str, dict[int, int]] = {}
    for m, payloads in by_minute.items():
        for p in payloads:
            for queue, (ready, _) in p.get("queues", {}).items():
                depths.setdefault(queue, {})[m] = max(depths.get(queue, {}).get(m, 0), ready)
    newest: dict[str, Any] = {}
    for row in sorted(rows, key=lambda r: (r.minute, r.updated_at)):
        newest[row.replica] = row
    recent = [r for r in newest.values() if r.minute >= minutes[-1] - 1]
    queues: dict[str, list[int]] = {}
    breakers: dict[str, dict[str, Any]] = {}
    for row in recent:
        queues.update(row.payload.get("queues", {}))
        for name, value in row.payload.get("breakers", {}).items():
            seen = breakers.setdefault(name, {"state": 0, "replicas": 0})
            seen["state"] = max(seen["state"], int(value))
            seen["replicas"] += 1
    return {
        "latency": latency,
        "depths": {q: _filled(d, minutes) for q, d in sorted(depths.items())},
        "queues": dict(sorted(queues.items())),
        "breakers": {
            name: {"state": BREAKER_STATES.get(b["state"], "?"), "replicas": b["replicas"]}
            for name, b in sorted(breakers.items())
        },
        "replicas": len(recent),
    }


async def overview_data(state: GatewayState) -> dict[str, Any]:
    db = state.db
    last = int(time.time() // 60)
    first = last - MINUTES + 1
    minutes = list(range(first, last + 1))
    counts = {s.value: 0 for s in Status} | await state.queries.counts()
    per_minute = await _per_minute(db, first)
    sampled = await _sampled(state, first, minutes)
    charts = {
        chart: {name: _filled(series, minutes) for name, series in groups.items()}
        for chart, groups in per_minute.items()
    }
    charts["accept"] = sampled["latency"]["accept"]
    charts["e2e"] = sampled["latency"]["e2e"]
    charts["depths"] = sampled["depths"]
    return {
        "counts": counts,
        "total": sum(counts.values()),
        "minutes": [m * 60 for m in minutes],
        "charts": charts,
        "queues": sampled["queues"],
        "breakers": sampled["breakers"],
        "replicas": sampled["replicas"],
        "at": dt.datetime.now(dt.UTC).strftime("%H:%M:%S UTC"),
    }


@router.get("/")
async def overview(state: State, token: Session) -> Response:
    return _page("overview.html", token, nav="overview", o=await overview_data(state))


@router.get("/api/overview")
async def overview_json(state: State, _: JsonSession) -> Response:
    data = await overview_data(state)
    fragment = env.get_template("_overview.html").render(o=data)
    return JSONResponse({"data": data, "replace": {"overview": fragment}}, headers=HEADERS)
