"""HTTP plumbing shared by every service, one module per role:

* :mod:`~tidings.core.web.app`: the app factory (``create_service_app``), /health, /metrics,
  the service's database for the app's lifetime, ``from_state``;
* :mod:`~tidings.core.web.middleware`: correlation ids, a log line per request (2xx
  sampled) and the body limit, in one layer;
* :mod:`~tidings.core.web.handlers`: every error as the envelope;
* :mod:`~tidings.core.web.health`: the checks behind /health;
* :mod:`~tidings.core.web.client`: the client one service uses to call another.

The services import these names from ``tidings.core.web``: this list is the package's
public surface, and the only place that re-exports them.
"""

from tidings.core.web.app import app_database, create_service_app, from_state
from tidings.core.web.client import ServiceClient, make_http_client, service_client
from tidings.core.web.handlers import install_error_handlers
from tidings.core.web.health import HealthCheck, HealthRegistry
from tidings.core.web.middleware import ServiceMiddleware

__all__ = [
    "HealthCheck",
    "HealthRegistry",
    "ServiceClient",
    "ServiceMiddleware",
    "app_database",
    "create_service_app",
    "from_state",
    "install_error_handlers",
    "make_http_client",
    "service_client",
]
