from tidings.core.migrations import run_env
from tidings.users.models import UsersBase

run_env(UsersBase.metadata)
