from tidings.core.migrations import run_env
from tidings.templates.models import TemplatesBase

run_env(TemplatesBase.metadata)
