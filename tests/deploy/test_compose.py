"""deploy/compose.yaml: valid by the Compose specification's schema, and true to the code
(the commands parse with the real CLI, every TIDINGS_* variable is one a service reads, the
health checks probe each service's own port), with health checks and a start order."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tidings.core.settings import SERVICES, TidingsSettings

from .helpers import (
    COMPOSE,
    DEPLOY,
    MissingVariable,
    check_jsonschema,
    cli_accepts,
    default_port,
    dotenv_keys,
    interpolate,
    load_yaml,
    setting_names,
)

INFRASTRUCTURE = ("postgres", "rabbitmq", "redis", "mailpit")
# What `tidings run SERVICE` needs from the bus (runner.BUS_SERVICES): apart, they reach
# each other only through RabbitMQ.
BUS_SERVICES = ("gateway", "email", "push")


def example_env() -> dict[str, str]:
    """deploy/.env.example with every blank filled, as an operator would."""
    return {k: v or f"x-{k.lower()}" for k, v in dotenv_keys(DEPLOY / ".env.example").items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The file as `docker compose config` would see it: YAML merged, variables filled."""
    return dict(interpolate(load_yaml(COMPOSE), example_env()))


def tidings_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the Tidings image (every one but the infrastructure)."""
    return {n: s for n, s in compose["services"].items() if n not in INFRASTRUCTURE}


def test_the_compose_specification_schema_accepts_it() -> None:
    result = check_jsonschema("vendor.compose-spec", COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_and_the_infrastructure_are_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*SERVICES, "migrate", *INFRASTRUCTURE}


def test_each_service_runs_its_own_command_from_the_one_image(compose: dict[str, Any]) -> None:
    services = tidings_services(compose)
    assert len({s["image"] for s in services.values()}) == 1, "one image for every service"
    for name in SERVICES:
        command = services[name]["command"]
        assert command == ["run", name]
        assert cli_accepts(command) is None, cli_accepts(command)
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no", "a one-shot: restarting it would loop"


def test_every_service_but_the_gateway_runs_as_two_replicas(compose: dict[str, Any]) -> None:
    services = tidings_services(compose)
    for name in ("users", "templates", "email", "push"):
        assert services[name]["deploy"]["replicas"] == 2, name
    # The gateway publishes a host port, which only one container can hold.
    assert "ports" in services["gateway"] and "deploy" not in services["gateway"]


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    missing = [
        name
        for name, service in compose["services"].items()
        if name != "migrate" and not service.get("healthcheck", {}).get("test")
    ]
    assert not missing, f"no healthcheck: {missing}"


def test_each_tidings_health_check_probes_that_services_health_endpoint(
    compose: dict[str, Any],
) -> None:
    for name in SERVICES:
        test = " ".join(compose["services"][name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{default_port(name)}/health" in test, name


def test_depends_on_uses_conditions_on_things_that_can_meet_them(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs the long form (conditions)"
        for dependency, spec in depends.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = spec.get("condition")
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[dependency].get("restart") == "no", f"{dependency} restarts"
            else:
                pytest.fail(f"{name} -> {dependency}: condition {condition!r}")


def test_start_order_infrastructure_then_migration_then_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in SERVICES:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        if name in BUS_SERVICES:
            assert depends["rabbitmq"]["condition"] == "service_healthy", name
    assert services["email"]["depends_on"]["mailpit"]["condition"] == "service_healthy"


def test_the_start_order_has_no_cycle(compose: dict[str, Any]) -> None:
    graph = {n: set(s.get("depends_on", {})) for n, s in compose["services"].items()}
    done: set[str] = set()
    while graph.keys() - done:
        ready = {n for n in graph.keys() - done if graph[n] <= done}
        assert ready, f"a cycle among {sorted(graph.keys() - done)}"
        done |= ready


def test_every_tidings_variable_is_one_the_code_reads(compose: dict[str, Any]) -> None:
    known = setting_names()
    for name, service in tidings_services(compose).items():
        unknown = sorted(k for k in service["environment"] if k not in known)
        assert not unknown, f"{name}: {unknown} are not settings of any service"


def test_what_run_service_requires_is_set(compose: dict[str, Any]) -> None:
    for name in SERVICES:
        env = compose["services"][name]["environment"]
        for variable in (
            "TIDINGS_DATABASE_URL",
            "TIDINGS_AMQP_URL",
            "TIDINGS_REDIS_URL",
            "TIDINGS_ADMIN_API_KEY",
            "TIDINGS_SECRET_KEY",
            "TIDINGS_SERVICE_TOKEN",
        ):
            assert env.get(variable), f"{name} lacks {variable}"
        assert env["TIDINGS_HOST"] == "0.0.0.0", "reachable from the other containers"
    email = compose["services"]["email"]["environment"]
    assert email["TIDINGS_SMTP_URL"] == "smtp://mailpit:1025", "the mail catcher"


def test_the_static_service_urls_name_compose_services_and_their_ports(
    compose: dict[str, Any],
) -> None:
    env = compose["services"]["gateway"]["environment"]
    for variable, service in (
        ("TIDINGS_USERS_URL", "users"),
        ("TIDINGS_TEMPLATES_URL", "templates"),
        ("TIDINGS_GATEWAY_URL", "gateway"),
    ):
        assert env[variable] == f"http://{service}:{default_port(service)}"


def test_the_infrastructure_urls_point_at_the_compose_services(compose: dict[str, Any]) -> None:
    env = compose["services"]["gateway"]["environment"]
    assert "@postgres:5432/" in env["TIDINGS_DATABASE_URL"]
    assert "@rabbitmq:5672/" in env["TIDINGS_AMQP_URL"]
    assert env["TIDINGS_REDIS_URL"].startswith("redis://redis:6379/")


def test_secrets_are_required_and_listed_in_the_example_env() -> None:
    raw = load_yaml(COMPOSE)
    with pytest.raises(MissingVariable):
        interpolate(raw, {})
    required = set()
    for match in re.finditer(r"\$\{([A-Z_]+):\?", COMPOSE.read_text()):
        required.add(match.group(1))
    assert required >= {"TIDINGS_ADMIN_API_KEY", "TIDINGS_SECRET_KEY", "TIDINGS_SERVICE_TOKEN"}
    missing = required - dotenv_keys(DEPLOY / ".env.example").keys()
    assert not missing, f"required by compose.yaml but not in .env.example: {missing}"


def test_stop_grace_outlasts_the_shutdown_grace(compose: dict[str, Any]) -> None:
    grace_s = TidingsSettings().shutdown_grace_s
    for name in SERVICES:
        period = compose["services"][name]["stop_grace_period"]
        assert period.endswith("s") and float(period[:-1]) > grace_s, name


def test_the_interpolation_helper_follows_compose() -> None:
    assert interpolate("${A:-x}", {}) == "x"
    assert interpolate("${A:-x}", {"A": ""}) == "x"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("a$${B}", {}) == "a${B}"
    with pytest.raises(MissingVariable):
        interpolate("${A:?set A}", {"A": ""})
