"""The vendored chart library is the one VENDORED.md names, served by the gateway itself."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

STATIC = Path(__file__).parents[2] / "src/tidings/gateway/static"


def test_the_vendored_files_are_those_noted_with_their_licence() -> None:
    noted = dict(
        (name, digest)
        for digest, name in re.findall(
            r"^([0-9a-f]{64})  (\S+)$", (STATIC / "VENDORED.md").read_text(), re.M
        )
    )
    assert set(noted) == {"uPlot.iife.min.js", "uPlot.min.css"}
    for name, digest in noted.items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name
    assert "(v1.6.32)" in (STATIC / "uPlot.iife.min.js").read_text()[:100]
    assert "MIT License" in (STATIC / "uPlot.LICENSE").read_text()
