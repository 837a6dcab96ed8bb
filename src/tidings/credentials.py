"""The credentials ``tidings up`` runs with. Those not set in the environment are made at
start; the embedded default keeps what it made in its data directory (``credentials.json``,
mode 600), so a restart keeps users' sessions, API tokens and Web Push subscriptions working.
A variable set in the environment always wins over a kept value."""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tidings.core.settings import SecretName, TidingsSettings

log = logging.getLogger(__name__)

CREDENTIALS: tuple[SecretName, ...] = ("admin_api_key", "secret_key", "service_token")
# The Web Push key pair: made (and kept) on the embedded default only when neither is set.
VAPID = ("vapid_private_key", "vapid_public_key")
KEPT_FILE = "credentials.json"

Origin = Literal["environment", "kept", "made"]


class ConfigurationError(Exception):
    """What a command cannot run with, said in one line (``tidings`` exits with 2)."""


@dataclass(frozen=True)
class Credentials:
    settings: TidingsSettings  # read again, with the made and kept values in the environment
    admin_key: str
    admin_key_origin: Origin
    kept_in: Path | None  # the kept file, when they are kept


def kept_path(settings: TidingsSettings) -> Path:
    return settings.data_dir / KEPT_FILE


def read_kept(settings: TidingsSettings) -> dict[str, str]:
    """The kept credentials ({} when none are)."""
    path = kept_path(settings)
    try:
        kept = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise _unreadable(path, exc) from exc
    if not isinstance(kept, dict):
        raise _unreadable(path, ValueError("not a JSON object"))
    return {k: v for k, v in kept.items() if k in CREDENTIALS + VAPID and isinstance(v, str)}


def _unreadable(path: Path, exc: Exception) -> ConfigurationError:
    why = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return ConfigurationError(f"{path} unreadable: {why}; `tidings up --reset` starts afresh")


def _write_kept(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # Secrets: readable by their owner only, from the moment the file exists.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f, indent=2, sort_keys=True)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _in_environment(name: str) -> bool:
    # pydantic-settings reads TIDINGS_* case-insensitively; so does this.
    wanted = f"TIDINGS_{name.upper()}"
    return any(key.upper() == wanted and value for key, value in os.environ.items())


def ensure_credentials(settings: TidingsSettings, *, keep: bool = False) -> Credentials:
    """Put every credential not set into this process's environment (so every service it
    starts shares them): the kept one when ``keep`` and there is one, else a new one (kept
    when ``keep``)."""
    kept = read_kept(settings) if keep else {}
    values: dict[str, str] = {}
    for name in CREDENTIALS:
        if settings.secret_or_none(name) is None:
            values[name] = kept.get(name) or secrets.token_urlsafe(32)
    if keep and not any(_in_environment(name) for name in VAPID):
        if all(kept.get(name) for name in VAPID):
            values |= {name: kept[name] for name in VAPID}
        else:
            from tidings.cli.vapid import generate_vapid_keys

            values |= dict(zip(VAPID, generate_vapid_keys(), strict=True))
    for key, value in values.items():
        os.environ[f"TIDINGS_{key.upper()}"] = value
    path = kept_path(settings) if keep else None
    if path is not None and kept | values != kept:
        _write_kept(path, kept | values)
        log.info("credentials kept in %s", path.resolve())
    if "admin_api_key" not in values:
        origin: Origin = "environment"
    else:
        origin = "kept" if kept.get("admin_api_key") == values["admin_api_key"] else "made"
    after = TidingsSettings()
    return Credentials(after, after.secret("admin_api_key"), origin, path)


def forget_kept(settings: TidingsSettings) -> None:
    kept_path(settings).unlink(missing_ok=True)
