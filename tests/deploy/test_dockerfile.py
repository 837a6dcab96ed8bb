"""The Dockerfile (parsed with dockerfile-parse) builds the package into the image the way
pyproject.toml says, runs `tidings` as an unprivileged user, and its build context
(.dockerignore) keeps what the build copies."""

from __future__ import annotations

import fnmatch
import io
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from tidings.core.settings import SERVICES

from .helpers import ROOT, cli_accepts, default_port


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    # From memory: the parser reads its file lazily, and must never write to it.
    return DockerfileParser(fileobj=io.BytesIO((ROOT / "Dockerfile").read_bytes()))


def instructions(dockerfile: DockerfileParser, name: str) -> list[dict[str, Any]]:
    return [i for i in dockerfile.structure if i["instruction"] == name]


def final_stage(dockerfile: DockerfileParser) -> list[dict[str, Any]]:
    froms = [i["startline"] for i in instructions(dockerfile, "FROM")]
    return [i for i in dockerfile.structure if i["startline"] >= froms[-1]]


def test_the_base_image_is_the_python_the_package_requires(dockerfile: DockerfileParser) -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = requires.removeprefix(">=")
    # A global ARG (before the first FROM) sets the version for every stage.
    args = dict(i["value"].partition("=")[::2] for i in instructions(dockerfile, "ARG"))
    version = args.get("PYTHON_VERSION", "")
    assert version == minimum, f"image Python {version}, package {requires}"
    for line in instructions(dockerfile, "FROM"):
        assert line["value"].startswith("python:${PYTHON_VERSION}"), line["value"]


def test_it_installs_the_package_with_pip(dockerfile: DockerfileParser) -> None:
    runs = " ".join(i["value"] for i in instructions(dockerfile, "RUN"))
    assert "pip install ." in runs
    copied = " ".join(i["value"] for i in instructions(dockerfile, "COPY"))
    for needed in ("pyproject.toml", "README.md", "src"):
        assert needed in copied, f"the wheel build needs {needed}"


def test_it_runs_tidings_as_an_unprivileged_user(dockerfile: DockerfileParser) -> None:
    stage = final_stage(dockerfile)
    entrypoint = [i for i in stage if i["instruction"] == "ENTRYPOINT"]
    cmd = [i for i in stage if i["instruction"] == "CMD"]
    assert json.loads(entrypoint[-1]["value"]) == ["tidings"]
    default = json.loads(cmd[-1]["value"])
    assert cli_accepts(default) is None, cli_accepts(default)
    user = [i for i in stage if i["instruction"] == "USER"][-1]["value"]
    assert user.split(":")[0] not in ("root", "0"), "the services need no privileges"
    env = dockerfile.envs
    assert env.get("TIDINGS_HOST") == "0.0.0.0", "in a container, listen beyond loopback"


def test_it_exposes_every_services_port(dockerfile: DockerfileParser) -> None:
    exposed = {int(p) for i in instructions(dockerfile, "EXPOSE") for p in i["value"].split()}
    assert exposed == {default_port(s) for s in SERVICES}


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore's rule: the last matching pattern wins, `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            ignored = not negate
    return ignored


def test_the_build_context_keeps_what_the_build_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for kept in ("pyproject.toml", "README.md", "src/tidings/cli/__init__.py"):
        assert not _ignored(kept, patterns), f".dockerignore drops {kept}"
    for dropped in (".git/config", "deploy/.env", ".tidings/gateway.db", ".venv/bin/python"):
        assert _ignored(dropped, patterns), f"{dropped} would be sent to the build"
