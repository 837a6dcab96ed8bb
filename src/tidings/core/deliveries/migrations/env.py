from tidings.core.deliveries.models import DeliveriesBase
from tidings.core.migrations import run_env

run_env(DeliveriesBase.metadata)
