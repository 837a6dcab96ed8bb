"""docs/architecture.md, operations.md and scaling.md stay true to the code: the diagram shows
the five things the spec names (service connections, queue structure, retry and failure
flow, database relationships, scaling plan) with the real names, its rendered image matches
its source, every `tidings` command shown parses with the real CLI, every TIDINGS_* variable
named is a real setting, and every relative link resolves."""

from __future__ import annotations

import hashlib
import re
import shlex
import struct
from pathlib import Path

import pytest

from tidings.core.deliveries.models import DeliveriesBase
from tidings.core.settings import SERVICES
from tidings.core.topology import EXCHANGE, QUEUES, RETRY_EXCHANGE
from tidings.gateway.models import GatewayBase
from tidings.push_worker.models import PushBase
from tidings.templates.models import TemplatesBase
from tidings.users.models import UsersBase

from .helpers import ROOT, cli_accepts, default_port, setting_names

DOCS = ROOT / "docs"
OURS = ("architecture.md", "operations.md", "scaling.md")
MARKER = "<!-- architecture-diagram:"
HASH_KEY = "mermaid-source-sha256"
SCHEMAS = {
    "gateway": GatewayBase,
    "users": UsersBase,
    "templates": TemplatesBase,
    "email": DeliveriesBase,
    "push": DeliveriesBase,
}


def diagram() -> str:
    """The Mermaid block the images are rendered from (deploy/tools/render_architecture.py
    reads it the same way)."""
    after = (DOCS / "architecture.md").read_text().split(MARKER, 1)[1]
    match = re.search(r"```mermaid\n(.*?)```", after, re.S)
    assert match, "no ```mermaid block after the marker"
    return match.group(1)


def test_the_diagram_shows_every_service_with_its_port() -> None:
    source = diagram()
    for service in SERVICES:
        assert re.search(rf"{service}( worker)? :{default_port(service)}", source), service


def test_the_diagram_shows_the_queue_structure() -> None:
    source = diagram()
    for name in (EXCHANGE, RETRY_EXCHANGE, *(q.name for q in QUEUES)):
        assert name in source, name
    for channel in ("email", "push"):
        assert f"{channel}.retry.&lt;tier&gt;ms" in source, f"{channel}'s retry tiers"


def test_the_diagram_shows_the_retry_and_failure_flow() -> None:
    source = diagram()
    for words in ("transient", "TTL expired", "delivery limit", "failed.queue", "replay"):
        assert words in source, words


def test_the_diagram_shows_each_schema_and_its_tables() -> None:
    source = diagram()
    for schema, base in SCHEMAS.items():
        assert f"schema {schema}" in source, schema
        for table in base.metadata.tables:
            assert table in source, f"{schema}.{table}"
    for table in PushBase.metadata.tables:
        assert table in source, f"push.{table}"


def test_the_diagram_shows_the_scaling_plan() -> None:
    source = diagram()
    assert "HPA on CPU" in source and "HPA on queue depth" in source
    assert "RabbitMQ cluster" in source and "quorum" in source


def test_architecture_md_has_every_table_in_its_schema_table() -> None:
    text = (DOCS / "architecture.md").read_text()
    rows = {m[0]: m[1] for m in re.findall(r"^\| `(\w+)` \| (.+?) \|", text, re.M)}
    for schema, base in SCHEMAS.items():
        tables = set(base.metadata.tables) | (
            set(PushBase.metadata.tables) if schema == "push" else set()
        )
        assert set(re.findall(r"`(\w+)`", rows[schema])) >= tables, schema


def _png_text(png: bytes) -> dict[str, str]:
    chunks: dict[str, str] = {}
    at = 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind = png[at + 4 : at + 8]
        if kind == b"tEXt":
            key, _, value = png[at + 8 : at + 8 + length].partition(b"\0")
            chunks[key.decode("latin-1")] = value.decode("latin-1")
        at += 12 + length
    return chunks


def test_the_rendered_images_are_of_the_current_source() -> None:
    digest = hashlib.sha256(diagram().encode()).hexdigest()
    stale = "stale: run `python3 deploy/tools/render_architecture.py`"
    svg = (DOCS / "architecture.svg").read_text()
    assert svg.startswith("<svg") and f"<!-- {HASH_KEY}: {digest} -->" in svg, stale
    png = (DOCS / "architecture.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert _png_text(png).get(HASH_KEY) == digest, stale


def _commands(text: str) -> list[list[str]]:
    """Every `tidings …` invocation in the fenced blocks and in inline code."""
    found = []
    blocks = re.findall(r"```(?:sh)?\n(.*?)```", text, re.S)
    lines = [line for block in blocks for line in block.splitlines()]
    lines += re.findall(r"`(tidings [^`]+)`", text)
    for line in lines:
        # The command, not the namespace (`kubectl -n tidings`) or the Secret's name: at the
        # start, after `&`, `$(`, `--` or `exec <service>`.
        starts = r"(?:^|&\s*|\$\(|--\s+|exec\s+\w+\s+)"
        for match in re.finditer(starts + r"tidings\s+([^&;|#`]*)", line.strip()):
            found.append(shlex.split(match.group(1)))
    return found


@pytest.mark.parametrize("doc", OURS)
def test_every_tidings_command_shown_parses(doc: str) -> None:
    for argv in _commands((DOCS / doc).read_text()):
        if any(a in ("...", "…", "SERVICE") or a.startswith("<") for a in argv):
            continue  # a placeholder, not a command
        argv = ["1" if a.isdigit() else a for a in argv]
        assert cli_accepts(argv) is None, cli_accepts(argv)


def test_operations_md_covers_every_admin_command() -> None:
    argvs = _commands((DOCS / "operations.md").read_text())
    shown = {tuple(a[:2]) for a in argvs}
    for command in (
        ("dead-letters", "list"),
        ("dead-letters", "show"),
        ("dead-letters", "replay"),
        ("api-keys", "create"),
        ("api-keys", "list"),
        ("api-keys", "revoke"),
        ("vapid", "generate"),
    ):
        assert command in shown, command
    assert ("migrate",) in {tuple(a[:1]) for a in argvs}


@pytest.mark.parametrize("doc", OURS)
def test_every_variable_named_is_a_real_setting(doc: str) -> None:
    text = (DOCS / doc).read_text()
    named = set(re.findall(r"\bTIDINGS_[A-Z0-9_]*[A-Z0-9]\b", text))
    unknown = sorted(n for n in named if n not in setting_names())
    assert not unknown, f"{doc} names settings the code does not have: {unknown}"


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


@pytest.mark.parametrize("doc", OURS)
def test_every_relative_link_resolves(doc: str) -> None:
    path = DOCS / doc
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        assert linked.exists(), f"{doc}: {target} does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked.read_text()), f"{doc}: no #{anchor} in {file_part}"


def test_the_link_checker_catches_a_broken_anchor() -> None:
    assert "service-discovery" in _anchors((DOCS / "decisions.md").read_text())
    assert "no-such-heading" not in _anchors((DOCS / "decisions.md").read_text())


def test_scaling_md_says_which_figures_are_measured() -> None:
    text = (DOCS / "scaling.md").read_text()
    assert "*measured*" in text and "*not measured yet*" in text and "*estimate*" in text
    assert Path(ROOT / "deploy" / "kubernetes" / "keda.yaml").exists()
