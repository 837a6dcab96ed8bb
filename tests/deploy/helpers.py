"""What the deployment tests share: the files, the settings the code defines, and the CLI."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import yaml

from tidings.cli import parser
from tidings.core.settings import ServiceName, TidingsSettings
from tidings.email_worker.settings import EmailSettings
from tidings.gateway.settings import GatewaySettings
from tidings.push_worker.settings import PushSettings
from tidings.templates.settings import TemplatesSettings
from tidings.users.settings import UsersSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
SETTINGS = (GatewaySettings, UsersSettings, TemplatesSettings, EmailSettings, PushSettings)
# The image's name in the manifests, which kustomization.yaml's `images:` rewrites.
IMAGE = "tidings"


def setting_names() -> set[str]:
    """Every TIDINGS_* variable some service reads."""
    return {f"TIDINGS_{name.upper()}" for cls in SETTINGS for name in cls.model_fields}


def default_port(service: str) -> int:
    return TidingsSettings().port_of(cast(ServiceName, service))


def cli_accepts(argv: list[str]) -> str | None:
    """None if the real `tidings` command line accepts ``argv``, else argparse's complaint.
    Parsing only: nothing runs."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser().parse_args(argv)
    except SystemExit as exc:
        return f"tidings {' '.join(argv)}: {err.getvalue().strip() or exc}"
    return None


def parsed_args(argv: list[str]) -> argparse.Namespace:
    return parser().parse_args(argv)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def check_jsonschema(builtin: str, path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with one of the schemas it bundles (offline)."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", builtin, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(Exception):
    pass


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, applied
    to every string of a parsed compose file (what `docker compose config` does first)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        present = name in env
        empty = not env.get(name)
        if op in (":?", "?") and (empty if op == ":?" else not present):
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and (empty if op == ":-" else not present):
            return arg
        return env.get(name, "")

    return _VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def dotenv_keys(path: Path) -> dict[str, str]:
    keys: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            keys[key.strip()] = value.strip()
    return keys
