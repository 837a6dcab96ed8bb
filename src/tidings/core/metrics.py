"""Prometheus metrics, named once for every service.

prometheus_client keeps metrics in a process-wide registry; that is the one global Tidings
allows itself, because /metrics must see what every part of the process counted (on the
embedded default all five services share one process, told apart by the ``service`` label).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_STAGES = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

HTTP_SECONDS = Histogram(
    "tidings_http_request_duration_seconds",
    "HTTP request durations, by route and status",
    ["service", "method", "route", "status"],
    buckets=_LATENCY,
)
PUBLISHED = Counter(
    "tidings_messages_published_total", "Messages published and confirmed", ["routing_key"]
)
CONSUMED = Counter(
    "tidings_messages_consumed_total",
    "Messages handled, by queue and outcome (acked, requeued, dead_lettered)",
    ["queue", "outcome"],
)
NOTIFICATIONS = Counter(
    "tidings_notifications_total", "Notification status changes", ["channel", "status"]
)
STAGE_SECONDS = Histogram(
    "tidings_stage_seconds",
    "Time from acceptance to each stage (queued, sent, delivered/failed recorded)",
    ["channel", "stage"],
    buckets=_STAGES,
)
DELIVERY_ERRORS = Counter(
    "tidings_delivery_errors_total", "Delivery failures by class", ["channel", "kind"]
)
RETRIES = Counter("tidings_retries_total", "Retries scheduled", ["channel"])
CACHE = Counter("tidings_cache_requests_total", "Look-up cache use", ["cache", "result"])
REDIS_DEGRADED = Counter(
    "tidings_redis_degraded_total",
    "Uses of Redis while it was unavailable, by what was done instead (docs/delivery.md)",
    ["use", "outcome"],
)
BREAKER_STATE = Gauge(
    "tidings_breaker_state",
    "Circuit breakers: 0 closed, 1 half-open, 2 open",
    ["service", "breaker"],
)
QUEUE_DEPTH = Gauge(
    "tidings_queue_depth", "Messages ready in a queue (read from RabbitMQ)", ["queue"]
)
QUEUE_CONSUMERS = Gauge("tidings_queue_consumers", "Consumers of a queue", ["queue"])

_STATE_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


def watch_breaker(service: str, name: str, state: Callable[[], str]) -> None:
    """Report a breaker's state whenever /metrics is read."""
    BREAKER_STATE.labels(service, name).set_function(lambda: _STATE_VALUE.get(state(), 0.0))


@functools.cache
def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once per process: prometheus_client's own look-up
    takes a lock and checks the labels on every call, a cost per notification on the hot path
    (docs/performance.md). Labels are a bounded set (routes, channels, statuses, queues)."""
    return metric.labels(*labels)


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
