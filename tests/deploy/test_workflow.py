""".github/workflows/ci.yml: valid by the GitHub Actions workflow schema (schemastore's, as
check-jsonschema bundles it), every job bounded in time, and the stages the project needs:
lint, type check, the tests on real PostgreSQL/RabbitMQ/Redis, the image, a deploy gated on
main."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .helpers import ROOT, WORKFLOW, check_jsonschema, load_yaml


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded = load_yaml(WORKFLOW)
    # YAML 1.1 reads the key `on` as True.
    loaded["on"] = loaded.pop(True, loaded.get("on"))
    return dict(loaded)


def steps_text(job: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) + str(step.get("uses", "")) for step in job["steps"])


@pytest.mark.parametrize(
    "schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"]
)
def test_the_workflow_schema_accepts_it(schema: str) -> None:
    result = check_jsonschema(schema, WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_and_type_check_run_what_the_test_suite_runs(workflow: dict[str, Any]) -> None:
    text = "\n".join(steps_text(job) for job in workflow["jobs"].values())
    for command in (
        "ruff check src tests",
        "ruff format --check src tests",
        "mypy",
        "lint-imports",
    ):
        assert command in text, command


def test_the_tests_run_on_real_infrastructure(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["test"]
    images = {name: spec["image"].split(":")[0] for name, spec in job["services"].items()}
    assert images == {"postgres": "postgres", "rabbitmq": "rabbitmq", "redis": "redis"}
    for name, spec in job["services"].items():
        assert "--health-cmd" in spec["options"], f"{name}: steps would start before it is up"
    assert "python -m pytest" in steps_text(job)
    # The variables the fixtures read (tests/conftest.py) are the ones the job sets.
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    read = set(re.findall(r'os\.environ\.get\(\s*"(TIDINGS_TEST_[A-Z_]+)"', conftest))
    assert read and read == set(job["env"]), (read, set(job["env"]))
    # conftest makes vhosts with rabbitmqctl: the job must provide one.
    if "rabbitmqctl" in conftest:
        assert "rabbitmqctl" in steps_text(job)


def test_the_image_is_built_and_started(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["image"]
    text = steps_text(job)
    assert "docker/build-push-action" in text
    assert "/health" in text, "a smoke test: the image starts and answers"
    push = next(s for s in job["steps"] if "docker push" in str(s.get("run", "")))
    assert "refs/heads/main" in push["if"], "only main publishes images"


def test_deploy_runs_only_for_main_after_everything_passed(workflow: dict[str, Any]) -> None:
    deploy = workflow["jobs"]["deploy"]
    assert "github.ref == 'refs/heads/main'" in deploy["if"]
    assert "github.event_name == 'push'" in deploy["if"]
    assert set(deploy["needs"]) == set(workflow["jobs"]) - {"deploy"}
    assert deploy["environment"] == "production"
    text = steps_text(deploy)
    # The schema first, then the services.
    assert text.index("job/migrate") < text.index("rollout status")
    assert "deploy/kubernetes" in text


def test_every_job_has_a_timeout(workflow: dict[str, Any]) -> None:
    for name, job in workflow["jobs"].items():
        assert 0 < job["timeout-minutes"] <= 60, name
