"""The gateway's HTML pages and their static scripts, from gateway/dashboard_templates/:
Jinja2 with autoescape and StrictUndefined (a missing value is an error, never a blank)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import jinja2

env = jinja2.Environment(
    loader=jinja2.PackageLoader("tidings.gateway", "dashboard_templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def render(name: str, **context: Any) -> str:
    return env.get_template(name).render(**context)


def static(name: str) -> str:
    """A file served as it is (a script)."""
    return resources.files("tidings.gateway").joinpath(f"dashboard_templates/{name}").read_text()
