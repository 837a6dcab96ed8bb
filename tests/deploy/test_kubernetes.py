"""deploy/kubernetes/: every built-in resource valid by the Kubernetes JSON schemas bundled in
kubernetes-validate (strict: an unknown or misspelt field fails), KEDA's resources checked
for the fields they use (no offline schema for its CRDs), and every cross-reference true:
selectors, ports, the Secret and ConfigMap, the autoscalers' targets, the queues, the CLI."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tidings.core.settings import SERVICES, TidingsSettings
from tidings.core.topology import QUEUES

from .helpers import (
    IMAGE,
    KUBERNETES,
    cli_accepts,
    default_port,
    load_all,
    load_yaml,
    setting_names,
)

HTTP_SERVICES = ("gateway", "users", "templates")
WORKERS = ("email", "push")
KUBERNETES_VERSION = "1.30.0"  # the oldest version the manifests promise to work on
MANIFESTS = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture(scope="module")
def resources() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in load_all(path)]


def of_kind(resources: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_built_in_resources_validate_against_the_kubernetes_schemas(path: Any) -> None:
    for doc in load_all(path):
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        for version in (KUBERNETES_VERSION, kubernetes_validate.latest_version()):
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_catches_a_misspelt_field() -> None:
    doc = load_all(KUBERNETES / "gateway.yaml")[0]
    doc["spec"]["template"]["spec"]["containers"][0]["envFrmo"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    kustomization = load_yaml(KUBERNETES / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = {p.name for p in MANIFESTS} - {"secret.example.yaml"}
    assert listed == present
    assert (
        kustomization["namespace"] == load_yaml(KUBERNETES / "namespace.yaml")["metadata"]["name"]
    )
    assert [i["name"] for i in kustomization["images"]] == [IMAGE]


def test_a_deployment_per_service_each_running_its_command(
    resources: list[dict[str, Any]],
) -> None:
    deployments = of_kind(resources, "Deployment")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        c = container(deployment)
        assert c["image"] == IMAGE, "kustomization's images: rewrites only this name"
        assert c["args"] == ["run", name]
        assert cli_accepts(c["args"]) is None, cli_accepts(c["args"])
        assert c["ports"] == [{"name": "http", "containerPort": default_port(name)}]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"]["port"] == "http", f"{name} {probe}"
        # The autoscalers own the replica count; a fixed one would reset it at every apply.
        assert "replicas" not in deployment["spec"], name


def test_liveness_never_depends_on_other_services(resources: list[dict[str, Any]]) -> None:
    for name, deployment in of_kind(resources, "Deployment").items():
        assert container(deployment)["livenessProbe"]["httpGet"]["path"] != "/health", name


def test_selectors_match_their_pods(resources: list[dict[str, Any]]) -> None:
    deployments = of_kind(resources, "Deployment")
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name
    for name, service in of_kind(resources, "Service").items():
        pods = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pods.items(), name
        assert service["spec"]["ports"][0]["port"] == default_port(name)
    for name, budget in of_kind(resources, "PodDisruptionBudget").items():
        pods = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= pods.items(), name


def test_the_http_services_have_services_and_cpu_autoscalers(
    resources: list[dict[str, Any]],
) -> None:
    # And the email worker's, where the gateway's dashboard reads the emails as sent.
    assert set(of_kind(resources, "Service")) == set(HTTP_SERVICES) | {"email"}
    deployments = of_kind(resources, "Deployment")
    autoscalers = of_kind(resources, "HorizontalPodAutoscaler")
    assert set(autoscalers) == set(HTTP_SERVICES)
    for name, hpa in autoscalers.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
        assert hpa["spec"]["minReplicas"] >= 2, "one pod is no redundancy"
        # Utilization is measured against the request: without one the HPA cannot scale.
        assert container(deployments[name])["resources"]["requests"]["cpu"], name


def test_the_workers_scale_on_their_queues_depth(resources: list[dict[str, Any]]) -> None:
    deployments = of_kind(resources, "Deployment")
    scaled = of_kind(resources, "ScaledObject")
    auth = of_kind(resources, "TriggerAuthentication")
    assert set(scaled) == set(WORKERS)
    queue_names = {q.name for q in QUEUES}
    secret_keys = set(of_kind(resources, "Secret")["tidings"]["stringData"])
    for name, obj in scaled.items():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        assert obj["spec"]["scaleTargetRef"]["name"] in deployments
        assert 2 <= obj["spec"]["minReplicaCount"] <= obj["spec"]["maxReplicaCount"]
        queues = set()
        for trigger in obj["spec"]["triggers"]:
            assert trigger["type"] == "rabbitmq"
            meta = trigger["metadata"]
            assert meta["mode"] in ("QueueLength", "MessageRate")
            assert meta["protocol"] in ("amqp", "http", "auto")
            assert int(meta["value"]) > 0, "KEDA wants the target as a string of a number"
            assert isinstance(meta["value"], str)
            queues.add(meta["queueName"])
            assert trigger["authenticationRef"]["name"] in auth
        assert queues <= queue_names, f"not in tidings.core.topology: {queues - queue_names}"
        assert queues == {f"{name}.queue", f"{name}.priority.queue"}
    for trigger_auth in auth.values():
        for ref in trigger_auth["spec"]["secretTargetRef"]:
            assert ref["name"] == "tidings" and ref["key"] in secret_keys
    # KEDA makes the HPA itself; a second one on the same Deployment would fight it.
    autoscalers = of_kind(resources, "HorizontalPodAutoscaler").values()
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in autoscalers}
    assert not hpa_targets & set(WORKERS)


def test_config_and_secret_hold_only_real_settings(resources: list[dict[str, Any]]) -> None:
    known = setting_names()
    config = of_kind(resources, "ConfigMap")["tidings"]["data"]
    secret = of_kind(resources, "Secret")["tidings"]["stringData"]
    unknown = sorted(k for k in [*config, *secret] if k not in known)
    assert not unknown, f"not settings of any service: {unknown}"
    assert not set(config) & set(secret), "one place for each setting"
    for required in ("TIDINGS_ADMIN_API_KEY", "TIDINGS_SECRET_KEY", "TIDINGS_SERVICE_TOKEN"):
        assert required in secret, f"{required} is a secret, the same in every pod"
    for url in ("TIDINGS_DATABASE_URL", "TIDINGS_AMQP_URL", "TIDINGS_REDIS_URL"):
        assert url in secret, f"{url} carries a password: Secret, not ConfigMap"
    assert config["TIDINGS_HOST"] == "0.0.0.0"


def test_every_pod_reads_the_config_and_the_secret(resources: list[dict[str, Any]]) -> None:
    pods = [*of_kind(resources, "Deployment").values(), *of_kind(resources, "Job").values()]
    for workload in pods:
        env_from = container(workload)["envFrom"]
        assert {"configMapRef": {"name": "tidings"}} in env_from
        assert {"secretRef": {"name": "tidings"}} in env_from
        for variable in container(workload).get("env", []):
            assert variable["name"] in setting_names()


def test_service_urls_in_the_config_name_the_services(resources: list[dict[str, Any]]) -> None:
    config = of_kind(resources, "ConfigMap")["tidings"]["data"]
    services = of_kind(resources, "Service")
    for variable, name in (
        ("TIDINGS_USERS_URL", "users"),
        ("TIDINGS_TEMPLATES_URL", "templates"),
        ("TIDINGS_GATEWAY_URL", "gateway"),
    ):
        assert name in services
        assert config[variable] == f"http://{name}:{default_port(name)}"


def test_the_migration_job_runs_tidings_migrate(resources: list[dict[str, Any]]) -> None:
    job = of_kind(resources, "Job")["migrate"]
    args = container(job)["args"]
    assert args == ["migrate"] and cli_accepts(args) is None
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_pods_get_time_to_finish_what_they_hold(resources: list[dict[str, Any]]) -> None:
    config = of_kind(resources, "ConfigMap")["tidings"]["data"]
    grace_s = float(config.get("TIDINGS_SHUTDOWN_GRACE_S", TidingsSettings().shutdown_grace_s))
    for name, deployment in of_kind(resources, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        pre_stop_s = 5 if "lifecycle" in pod["containers"][0] else 0
        assert pod["terminationGracePeriodSeconds"] > grace_s + pre_stop_s, name


def test_pods_run_as_the_images_unprivileged_user(resources: list[dict[str, Any]]) -> None:
    pods = [*of_kind(resources, "Deployment").values(), *of_kind(resources, "Job").values()]
    for workload in pods:
        spec = workload["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001, "the Dockerfile's uid"
