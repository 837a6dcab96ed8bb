"""What ``tidings up`` tells the person who started it, once every service listens: where
to go, the admin key, where the mail goes and how to stop. Printed to stdout; the log lines
go to stderr."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tidings.core.settings import TidingsSettings
from tidings.credentials import Credentials

if TYPE_CHECKING:
    from tidings.email_worker.settings import EmailSettings


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is under it."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)


def _admin_key(credentials: Credentials) -> str:
    if credentials.admin_key_origin == "environment":
        return "the one in TIDINGS_ADMIN_API_KEY"
    if credentials.kept_in is None:
        return (
            f"{credentials.admin_key}  (made for this run; set TIDINGS_ADMIN_API_KEY to keep one)"
        )
    how = "kept" if credentials.admin_key_origin == "kept" else "made now, kept"
    return (
        f"{credentials.admin_key}  ({how} in {_shown(credentials.kept_in)}; "
        "`tidings up --reset` starts afresh)"
    )


def _mail(settings: TidingsSettings, mail: EmailSettings) -> str:
    if mail.smtp_url:
        where = urlsplit(mail.smtp_url)
        return f"sent through {where.scheme}://{where.hostname}:{where.port or 25}"
    return (
        f"captured on 127.0.0.1:{mail.smtp_capture_port} into "
        f"{_shown(settings.data_dir / 'mailbox')}; `tidings mail` shows it"
    )


def banner(credentials: Credentials, headline: str, mail: EmailSettings) -> str:
    """``mail``: the email worker's settings (the SMTP server, or the capture port)."""
    settings = credentials.settings
    gateway = settings.url_of("gateway")
    rows = [
        ("Gateway", gateway),
        ("API docs", f"{gateway}/docs"),
        ("Dashboard", f"{gateway}/dashboard/"),
        ("Admin key", _admin_key(credentials)),
        ("Mail", _mail(settings, mail)),
        ("Try it", "tidings send USER_ID|EMAIL TEMPLATE name=Ada; tidings status ID"),
        ("Check", "tidings doctor"),
    ]
    lines = [headline, ""]
    lines += [f"  {label:<10} {value}" for label, value in rows]
    lines += ["", "Stop it with Ctrl-C (or SIGTERM)."]
    return "\n".join(lines)
