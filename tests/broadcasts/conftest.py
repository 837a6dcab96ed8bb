from tests.faults.conftest import make_system, proxy_to  # noqa: F401 - fixtures
from tests.gateway.conftest import system, system_overrides  # noqa: F401 - fixtures
