"""HTTP plumbing shared by every service, one module per role:

* :mod:`~tidings.core.web.app`: the app factory (``create_service_app``), /health, /metrics,
  the service's database for the app's lifetime, ``from_state``; ``ServiceApp``, whose
  middleware stack is the one layer below;
* :mod:`~tidings.core.web.middleware`: correlation ids, a log line per request (2xx
  sampled), the body limit and the exception handlers, in one layer;
* :mod:`~tidings.core.web.handlers`: every error as the envelope;
* :mod:`~tidings.core.web.lean`: a hot route served without FastAPI's dependency solving
  (``LeanRoute``), its FastAPI route kept for the schema;
* :mod:`~tidings.core.web.health`: the checks behind /health;
* :mod:`~tidings.core.web.client`: the client one service uses to call another.

The services import these names from ``tidings.core.web``: this list is the package's
public surface, and the only place that re-exports them.
"""

from tidings.core.web.app import ServiceApp, app_database, create_service_app, from_state
from tidings.core.web.client import ServiceClient, make_http_client, service_client
from tidings.core.web.handlers import install_error_handlers
from tidings.core.web.health import HealthCheck, HealthRegistry
from tidings.core.web.lean import LeanRoute
from tidings.core.web.middleware import ServiceMiddleware

__all__ = [
    "HealthCheck",
    "HealthRegistry",
    "LeanRoute",
    "ServiceApp",
    "ServiceClient",
    "ServiceMiddleware",
    "app_database",
    "create_service_app",
    "from_state",
    "install_error_handlers",
    "make_http_client",
    "service_client",
]
