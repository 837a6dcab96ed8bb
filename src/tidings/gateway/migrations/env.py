from tidings.core.migrations import run_env
from tidings.gateway.models import GatewayBase

run_env(GatewayBase.metadata)
