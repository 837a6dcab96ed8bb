"""Logging, configured once at the entry point: JSON lines carrying the correlation id, or
plain lines for a person at a terminal.

The correlation id lives in a ContextVar: the HTTP middleware sets it from the
``X-Correlation-ID`` header (or makes one), bus consumers set it from the AMQP message,
and HTTP clients and publishers copy it onto what they send.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar

from pythonjsonlogger.orjson import OrjsonFormatter

CORRELATION_HEADER = "X-Correlation-ID"
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def current_correlation_id() -> str:
    """The id of the work in progress, making one if none is set."""
    cid = correlation_id.get()
    if cid is None:
        cid = new_correlation_id()
        correlation_id.set(cid)
    return cid


# Bearer material that travels in URLs and so in log lines: the unsubscribe token in its
# path (a JWT valid 400 days), any JWT, an API key, and the usual credential query parameters.
_SECRETS = re.compile(
    r"(?P<unsub>/unsubscribe/)[^/?#\s\"']+"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"
    r"|(?P<key>tid_)[A-Za-z0-9_-]{16,}"
    r"|(?P<param>[?&](?:token|access_token|refresh_token|api_key|key|signature)=)[^&#\s\"']+",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def _redaction(found: re.Match[str]) -> str:
    prefix = found.group("unsub") or found.group("key") or found.group("param") or ""
    return prefix + REDACTED


def redact(text: str) -> str:
    """``text`` with the bearer material above replaced by ``[redacted]``."""
    return _SECRETS.sub(_redaction, text)


class _RedactFilter(logging.Filter):
    """On the one handler: every line, whoever logged it (our request line, httpx, uvicorn),
    is redacted once its message is formatted. The formatted message replaces the record's
    ``msg`` and ``args``, so the formatter does not format it a second time."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        return True


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.correlation_id = cid = correlation_id.get()
        record.correlation = f" [{cid}]" if cid else ""
        return True


def _to_a_person() -> bool:
    """Both stdout and stderr are terminals: someone is watching."""
    return sys.stdout.isatty() and sys.stderr.isatty()


# Quiet at INFO: libraries whose lines say nothing to an operator (every HTTP request's URL,
# connection chatter, aiosmtpd's per-command lines, alembic's "Context impl" and one line per
# revision, uvicorn's four start lines per server): the runner says in one line what the
# migrations did and where each service listens. Their warnings and errors still show.
_QUIET = ("httpx", "aiormq", "aio_pika", "mail.log", "alembic", "uvicorn.error")


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto") -> None:
    """Send every log record to stderr, one JSON object per line, or one plain line
    (``fmt="text"``, or ``"auto"`` at a terminal). JSON is written with orjson: half the cost
    of the json module per line (docs/performance.md)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json" or (fmt == "auto" and not _to_a_person()):
        handler.setFormatter(
            OrjsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)-7s %(service)s %(name)s: %(message)s%(correlation)s",
                datefmt="%H:%M:%S",
            )
        )
    handler.addFilter(_ContextFilter(service))
    handler.addFilter(_RedactFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log duplicates our request log line; keep its errors.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # httpx's URLs matter most: a Web Push endpoint is the user's capability URL, and the
    # services' own requests are in our request lines already.
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
