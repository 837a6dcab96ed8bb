"""What the gateway's lifespan builds, in one typed object: ``app.state.gateway``. Routes
take its members through gateway.dependencies, never from ``app.state`` themselves."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from tidings.core.access import Access
from tidings.core.bus import Bus
from tidings.core.cache import Cache
from tidings.core.db import Database
from tidings.core.web import ServiceClient
from tidings.gateway.accept import Acceptance
from tidings.gateway.broadcasts import Broadcasts
from tidings.gateway.dashboard_samples import Sampler
from tidings.gateway.deadletters import DeadLetters
from tidings.gateway.fanout import Fanout
from tidings.gateway.feedback import Feedback
from tidings.gateway.keys import ApiKeys
from tidings.gateway.limits import Limits
from tidings.gateway.lookups import UserDirectory
from tidings.gateway.proxy import Proxy
from tidings.gateway.queries import NotificationQueries
from tidings.gateway.reconcile import Reconciler
from tidings.gateway.relay import OutboxRelay
from tidings.gateway.settings import GatewaySettings
from tidings.gateway.suppressions import Suppressions
from tidings.gateway.topics import Topics
from tidings.gateway.transitions import StatusTransitions
from tidings.webhooks.endpoints import Endpoints


@dataclass(frozen=True)
class GatewayState:
    """The gateway's resources and services, built once per app by the lifespan
    (gateway.app) and closed with it."""

    settings: GatewaySettings
    # The gateway's store, for the dashboard's own reads (its figures, a notification's story).
    db: Database
    access: Access
    bus: Bus
    cache: Cache
    limits: Limits
    api_keys: ApiKeys
    # Look-ups with the service credential (and the breakers); the proxy carries the caller.
    users_client: ServiceClient
    templates_client: ServiceClient
    users: UserDirectory
    proxy: Proxy
    suppressions: Suppressions
    # Email feedback (bounce receiver, Mailgun's webhook, unsubscribe links): one rule.
    feedback: Feedback
    relay: OutboxRelay
    acceptance: Acceptance
    queries: NotificationQueries
    transitions: StatusTransitions
    dead_letters: DeadLetters
    reconciler: Reconciler
    # Outbound webhooks' endpoints (gateway.webhook_endpoints).
    webhook_endpoints: Endpoints
    # Topics and broadcasts (docs/broadcasts.md): the fan-out runs in every replica.
    topics: Topics
    broadcasts: Broadcasts
    fanout: Fanout
    bulk_relay: OutboxRelay
    # This replica's per-minute figures for the dashboard's overview (dashboard_samples).
    sampler: Sampler
    # The email worker, with the service token: the dashboard's emails as sent.
    email_worker_http: httpx.AsyncClient
