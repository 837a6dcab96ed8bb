from tidings.core.migrations import run_env
from tidings.push_worker.models import PushBase

# Schema "push" also holds core's delivery records and their alembic_version table.
run_env(PushBase.metadata, version_table="alembic_version_push_worker")
