"""The Prometheus scrape configuration and the Grafana dashboard agree with the code: every
service's port is scraped, and every metric a panel queries is one the services export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import tidings.core.metrics  # noqa: F401 - registers the metrics
from tidings.core.settings import SERVICES, TidingsSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def exported() -> set[str]:
    names = set()
    for family in REGISTRY.collect():
        for sample in family.samples:
            names.add(sample.name)
    return names


def test_every_service_is_scraped_on_its_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    settings = TidingsSettings()
    assert targets == {f"{s}:{settings.port_of(s)}" for s in SERVICES}


def test_the_scrape_presents_the_metrics_token() -> None:
    """/metrics needs Bearer TIDINGS_METRICS_TOKEN (tests/gateway/test_open_routes.py)."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert "metrics_token" in TidingsSettings.model_fields
    for job in config["scrape_configs"]:
        assert job["authorization"]["type"] == "Bearer", job["job_name"]
        assert job["authorization"]["credentials_file"], job["job_name"]


def test_every_panel_queries_metrics_that_exist() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "tidings-dashboard.json").read_text())
    known = exported()
    # Labelled metrics without samples yet still expose their _bucket/_count/_total names
    # once used; compare on the family names too.
    families = {f.name for f in REGISTRY.collect()}
    queried = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            queried |= set(re.findall(r"tidings_[a-z_]+", target["expr"]))
    assert queried
    for name in queried:
        base = re.sub(r"_(bucket|count|sum|total)$", "", name)
        assert name in known or base in families, f"{name} is not a metric of Tidings"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
