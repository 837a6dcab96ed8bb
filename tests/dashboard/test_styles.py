"""The dashboard styles each status the API reports, and nothing that is not one."""

from __future__ import annotations

import re
from pathlib import Path

from tidings.core.status import Status

BASE = Path(__file__).parents[2] / "src/tidings/gateway/dashboard_templates/base.html"


def test_the_status_styles_are_exactly_core_status_statuses() -> None:
    styled = set(re.findall(r"\.s-([a-z]+)", BASE.read_text()))
    assert styled == {status.value for status in Status}
