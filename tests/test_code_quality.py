"""The linters are part of the test suite: ruff (lint and format), mypy, and import-linter's
contract that no service imports another; and two rules of the code's shape (module length,
loggers by module name)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SRC = ROOT / "src" / "tidings"
MAX_LINES = 400


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "ruff", "check", "src", "tests"],
        [sys.executable, "-m", "ruff", "format", "--check", "src", "tests"],
        [sys.executable, "-m", "mypy"],
        [str(BIN / "lint-imports")],
    ],
    ids=["ruff", "ruff-format", "mypy", "import-linter"],
)
@pytest.mark.timeout(300)
def test_clean(command: list[str]) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def _modules(*exempt: str) -> list[Path]:
    return [
        path
        for path in sorted(SRC.rglob("*.py"))
        if not any(path.is_relative_to(SRC / part) for part in exempt)
    ]


def test_no_module_is_over_400_lines() -> None:
    """The benchmark is exempt (a tool, not a service)."""
    modules = _modules("bench")
    assert modules
    long = {
        str(path.relative_to(ROOT)): n
        for path in modules
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"over {MAX_LINES} lines: {long}"


def test_loggers_are_named_by_their_module() -> None:
    """``logging.getLogger(__name__)``, never a name by hand; core/logs.py configures the
    libraries' loggers by their names and is exempt."""
    literal = re.compile(r"""getLogger\(\s*[rbuf]*["']""")
    found = [
        f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
        for path in _modules("core/logs.py")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert found == []
