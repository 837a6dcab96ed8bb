from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from tidings.core.web import from_state
from tidings.templates.service import TemplateService

Templates = Annotated[TemplateService, Depends(from_state("templates"))]
