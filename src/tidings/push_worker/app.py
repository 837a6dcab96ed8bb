"""The push worker's process."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tidings.core.breaker import CircuitBreaker
from tidings.core.bus import Bus
from tidings.core.cache import RedisOptions
from tidings.core.metrics import watch_breaker
from tidings.core.outbound import Outbound
from tidings.core.web import service_client
from tidings.core.worker import Deliver, WorkerParts, create_worker_app
from tidings.push_worker.breakers import OriginBreakers
from tidings.push_worker.devices_client import DeviceDirectory
from tidings.push_worker.handlers import PushDelivery
from tidings.push_worker.senders import CallLimits, PushSender
from tidings.push_worker.senders.fcm import FcmSender
from tidings.push_worker.senders.fcm_auth import AccessTokens, ServiceAccount
from tidings.push_worker.senders.limited import RateLimitedPush
from tidings.push_worker.senders.netguard import (
    CheckedBackend,
    CheckedTransport,
    Resolver,
    system_resolver,
)
from tidings.push_worker.senders.webpush import WebPushSender, load_vapid
from tidings.push_worker.settings import PushSettings
from tidings.push_worker.store import DeviceResults

PROVIDER_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50)


def provider_client(
    settings: PushSettings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """For the push services and FCM: no redirects (an endpoint is where we were told to
    post, nowhere else), pooled connections per push service, no proxy from the
    environment (a proxy would connect where netguard did not check)."""
    return httpx.AsyncClient(
        timeout=settings.push_timeout_s,
        follow_redirects=False,
        limits=PROVIDER_LIMITS,
        transport=transport,
        trust_env=False,
    )


def call_limits(settings: PushSettings) -> CallLimits:
    return CallLimits(settings.push_deadline_s, settings.push_max_response_bytes)


def webpush_sender(settings: PushSettings, resolve: Resolver = system_resolver) -> WebPushSender:
    """``resolve``: how endpoint hosts are resolved (the event loop's getaddrinfo; tests
    pass their own)."""
    vapid = None
    if settings.vapid_private_key is not None:
        vapid = load_vapid(settings.vapid_private_key.get_secret_value())
        # Fail at start, not at the first push, on a subject VAPID refuses.
        vapid.sign({"aud": "https://push.example", "sub": settings.vapid_subject})
    # Endpoints are the users': every connection goes to an address checked public.
    backend = CheckedBackend(allow_loopback=settings.webpush_allow_insecure, resolve=resolve)
    http = provider_client(settings, CheckedTransport(backend, limits=PROVIDER_LIMITS))
    breakers = OriginBreakers(
        "webpush",
        failure_threshold=settings.push_breaker_failures,
        reset_timeout_s=settings.push_breaker_reset_s,
    )
    return WebPushSender(
        http,
        breakers,
        vapid=vapid,
        subject=settings.vapid_subject,
        allow_insecure=settings.webpush_allow_insecure,
        limits=call_limits(settings),
    )


def fcm_sender(settings: PushSettings) -> FcmSender:
    account = None
    if settings.fcm_service_account_json is not None:
        account = ServiceAccount.from_json(settings.fcm_service_account_json.get_secret_value())
    elif settings.fcm_service_account_file:
        account = ServiceAccount.from_file(settings.fcm_service_account_file)
    http = provider_client(settings)
    breaker = CircuitBreaker(
        "fcm",
        failure_threshold=settings.push_breaker_failures,
        reset_timeout_s=settings.push_breaker_reset_s,
    )
    return FcmSender(
        http,
        breaker,
        tokens=AccessTokens(account, http) if account else None,
        project_id=settings.fcm_project_id or (account.project_id if account else None),
        base_url=settings.fcm_base_url,
        click_action=settings.fcm_click_action,
        limits=call_limits(settings),
    )


def create_app(settings: PushSettings, *, bus: Bus | None = None) -> FastAPI:
    async def make_deliver(parts: WorkerParts) -> Deliver:
        stack, health = parts.stack, parts.health
        users = service_client(
            "users",
            settings,
            stack,
            caller="push",
            breaker=settings.users_breaker,
            registry=parts.registry,
        )
        health.add("users_service", users.ping)
        devices = DeviceDirectory(users)
        webpush = webpush_sender(settings)
        fcm = fcm_sender(settings)
        outbound = Outbound(
            settings.redis_url,
            settings.cache_namespace,
            queue_s=settings.outbound_queue_s,
            burst=settings.outbound_burst,
            options=RedisOptions.of(settings),
        )
        stack.push_async_callback(outbound.close)
        senders: dict[str, PushSender] = {
            "webpush": RateLimitedPush(webpush, outbound, settings.webpush_rate_per_s),
            "fcm": RateLimitedPush(fcm, outbound, settings.fcm_rate_per_s),
        }
        for sender in (webpush, fcm):
            stack.push_async_callback(sender.close)
        # One user's dead endpoint opens only its origin's breaker: a fact for /health, not
        # a reason to call the whole worker degraded.
        health.info["webpush_open_origins"] = webpush.breakers.health
        health.add("fcm", fcm.breaker.health)
        watch_breaker("push", "fcm", lambda: fcm.breaker.state)
        # The per-device results share the delivery records' store (core's, the worker's).
        return outbound.delivering(
            PushDelivery(
                parts.templates,
                devices,
                DeviceResults(parts.db),
                senders,
                ttl_s=settings.push_ttl_s,
            )
        )

    return create_worker_app(
        "push",
        settings,
        store_url=settings.store_url,
        make_deliver=make_deliver,
        bus=bus,
        description="Push worker: consumes push.queue, sends Web Push and FCM.",
    )
