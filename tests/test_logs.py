"""Log lines: JSON for machines, plain lines for a person at a terminal, and each message
formatted once."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from tidings.core import logs


class Counted:
    """A log argument that counts how often it is turned into text."""

    def __init__(self) -> None:
        self.times = 0

    def __str__(self) -> str:
        self.times += 1
        return "Ada"


def test_the_redact_filter_formats_a_message_once() -> None:
    arg = Counted()
    # Nothing to redact: the case where the message used to be formatted again.
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "user %s", (arg,), None)
    handler = logging.StreamHandler()
    handler.addFilter(logs._RedactFilter())
    handler.setFormatter(logging.Formatter("%(message)s"))
    assert handler.filter(record)
    assert handler.format(record) == "user Ada"
    assert arg.times == 1
    secret = logging.LogRecord("t", logging.INFO, __file__, 1, "key %s", ("tid_" + "a" * 20,), None)
    assert handler.filter(secret) and handler.format(secret) == f"key tid_{logs.REDACTED}"


def _log_line(fmt: str | None) -> str:
    """What one record looks like on stderr when stdout and stderr are pipes."""
    code = (
        "import logging; from tidings.core.logs import configure_logging; "
        f"configure_logging('gateway', 'INFO', {fmt!r}); logging.getLogger('x').info('hello')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode == 0, result.stderr
    return result.stderr.strip()


def test_json_unless_a_person_is_watching_or_text_is_asked_for() -> None:
    assert _log_line("auto").startswith("{") and '"message":"hello"' in _log_line("auto")
    assert _log_line("json").startswith("{")
    text = _log_line("text")
    assert not text.startswith("{") and text.endswith("INFO    gateway x: hello"), text
