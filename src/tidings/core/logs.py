"""Logging, configured once at the entry point: JSON lines carrying the correlation id.

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
    is redacted once its message is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.correlation_id = correlation_id.get()
        return True


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Send every log record to stderr, one JSON object per line (or plain text). JSON is
    written with orjson: half the cost of the json module per line (docs/performance.md)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            OrjsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s [%(service)s %(correlation_id)s] %(message)s"
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
    # httpx logs every request's full URL at INFO: a Web Push endpoint is the user's
    # capability URL, and the services' own requests are in our request lines already.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command lines
