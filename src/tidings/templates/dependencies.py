from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tidings.templates.service import TemplateService


def _templates(request: Request) -> TemplateService:
    service: TemplateService = request.app.state.templates
    return service


Templates = Annotated[TemplateService, Depends(_templates)]
