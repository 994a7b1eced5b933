"""The chart as rendered: lint, hardening, least-privilege RBAC, names, values checks."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from chart_render import CHART, ROOT, SCENARIOS, by_kind, helm_template, render

POD_KINDS = ("Deployment", "Pod")


def pod_spec(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else doc["spec"]


@pytest.mark.parametrize("values", [None, *SCENARIOS])
def test_helm_lint_strict(helm, values):
    args = [helm, "lint", "--strict", str(CHART), "--kube-version", "1.35.4"]
    if values:
        args += ["-f", str(CHART / "ci" / values)]
    result = subprocess.run(args, capture_output=True, text=True)
    # `--strict` turns the "icon is recommended" INFO into nothing; real problems fail.
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", [None, *SCENARIOS])
def test_pods_meet_the_restricted_pod_security_standard(helm, values):
    for doc in render(helm, values=values):
        if doc["kind"] not in POD_KINDS:
            continue
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert not spec.get("hostNetwork") and not spec.get("hostPID")
        for container in spec["containers"]:
            sc = container["securityContext"]
            where = f"{doc['metadata']['name']}/{container['name']}"
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in sc["capabilities"], where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"]["memory"], where


def test_operator_probes_use_the_health_port(helm):
    [deployment] = by_kind(render(helm), "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert "--health-port=8081" in container["args"]


@pytest.mark.parametrize("values", [None, *SCENARIOS])
def test_rbac_has_no_wildcards(helm, values):
    for doc in render(helm, values=values):
        for rule in doc.get("rules", []) if doc["kind"] in ("Role", "ClusterRole") else []:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), (doc["metadata"]["name"], rule)
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
            assert "secrets" not in rule["resources"]


def test_cluster_wide_by_default(helm):
    docs = render(helm)
    assert [d["metadata"]["name"] for d in by_kind(docs, "ClusterRole")] == ["ms-modelserve"]
    [lease_role] = by_kind(docs, "Role")
    assert lease_role["metadata"]["namespace"] == "modelserve-system"
    named = [r for r in lease_role["rules"] if r.get("resourceNames")]
    assert named == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                      "resourceNames": ["ms-modelserve"], "verbs": ["get", "update"]}]


def test_watch_namespaces_gives_roles_not_a_cluster_role(helm):
    docs = render(helm, values="namespaced-values.yaml")
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in by_kind(docs, "Role")}
    assert roles == {("team-a", "ms-modelserve"), ("team-b", "ms-modelserve"),
                     ("modelserve-system", "ms-modelserve-leader-election")}
    [deployment] = by_kind(docs, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=$(MODELSERVE_WATCH_NAMESPACES)" in args
    [config] = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("config")]
    assert config["data"]["MODELSERVE_WATCH_NAMESPACES"] == "team-a,team-b"
    assert config["data"]["MODELSERVE_LEASE_NAME"] == "modelserve-leader"


def test_single_replica_without_leader_election(helm):
    docs = render(helm, values="single-replica-values.yaml")
    assert not by_kind(docs, "PodDisruptionBudget")
    assert [r["metadata"]["name"] for r in by_kind(docs, "Role")] == []
    [deployment] = by_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert not [a for a in container["args"] if a.startswith("--leader-election")]
    assert container["image"].startswith("ghcr.io/modelserve/operator@sha256:")
    assert "--plain-logs" in container["args"]


def test_names_fit_in_63_characters(helm):
    long = "a-release-name-that-is-really-quite-long-for-a-kubernetes-objec"  # 63
    docs = render(helm, "--set", f"fullnameOverride={long}")
    for doc in docs:
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]
        assert not doc["metadata"]["name"].endswith("-")


def test_settings_change_rolls_the_pods(helm):
    def checksum(*args: str) -> str:
        [deployment] = by_kind(render(helm, *args), "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() == checksum()
    assert checksum() != checksum("--set", "operator.workers=4")


@pytest.mark.parametrize("values", [None, *SCENARIOS])
def test_every_setting_reaches_the_operator(helm, values):
    """Each $(VAR) in the args is defined, so Kubernetes never passes one through raw."""
    docs = render(helm, values=values)
    [deployment] = by_kind(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    [config] = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("config")]
    defined = set(config["data"]) | {e["name"] for e in container["env"]}
    used = {m for a in container["args"] for m in re.findall(r"\$\((\w+)\)", a)}
    assert used <= defined


# name: (helm --set arguments, text the error must contain)
BAD_VALUES = {
    "unknown-key": (["--set", "replica=2"], "additional properties 'replica' not allowed"),
    "bad-log-level": (["--set", "operator.logLevel=LOUD"], "value must be one of"),
    "zero-replicas": (["--set", "replicas=0"], "minimum"),
    "bad-namespace": (["--set", "watchNamespaces={Team_A}"], "does not match pattern"),
    "ha-without-election": (["--set", "leaderElection.enabled=false"],
                            "replicas is 2 but leaderElection.enabled is false"),
    "timings": (["--set", "leaderElection.retryPeriod=12"],
                "leaseDuration > renewDeadline > retryPeriod"),
    "bad-interval": (["--set", "metrics.serviceMonitor.interval=soon"],
                     "does not match pattern"),
    "bad-digest": (["--set", "image.digest=latest"], "does not match pattern"),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_bad_values_are_rejected_with_a_clear_message(helm, case):
    args, expected = BAD_VALUES[case]
    result = helm_template(helm, *args, check=False)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


def test_service_monitor_needs_prometheus_operator(helm):
    result = subprocess.run(
        [helm, "template", "ms", str(CHART), "--set", "metrics.serviceMonitor.enabled=true"],
        capture_output=True, text=True)
    assert result.returncode != 0
    assert "no monitoring.coreos.com/v1 ServiceMonitor" in result.stderr


def test_every_value_is_commented_and_in_the_schema():
    text = (CHART / "values.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=values.schema.json\n")
    data_below: int | None = None  # indent of a commented key whose value is data
    lines = text.splitlines()
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("-"):
            continue
        indent = len(line) - len(stripped)
        if data_below is not None and indent > data_below:
            continue  # inside a commented value, e.g. resources.requests.cpu
        data_below = None
        commented = lines[number - 1].strip().startswith("#")
        is_group = stripped.endswith(":")  # a group: its keys carry the comments
        assert commented or is_group, f"values.yaml:{number + 1} has no comment"
        if commented and is_group:
            data_below = indent
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(values: dict, node: dict, path: str) -> None:
        assert node.get("additionalProperties") is False, f"{path or '.'} not strict"
        for key, value in values.items():
            assert key in node["properties"], f"{path}.{key} missing from the schema"
            child = node["properties"][key]
            if isinstance(value, dict) and child.get("additionalProperties") is False:
                walk(value, child, f"{path}.{key}")

    walk(yaml.safe_load(text), schema, "")


def test_chart_crds_are_the_generated_ones():
    for path in (ROOT / "crds").glob("*.yaml"):
        assert (CHART / "crds" / path.name).read_text() == path.read_text(), (
            f"charts/modelserve/crds/{path.name} is stale: run hack/gen-crds")


def test_model_cache_values_reach_the_operator(helm):
    def args(*sets: str) -> list[str]:
        extra = [a for s in sets for a in ("--set", s)]
        [deployment] = by_kind(render(helm, *extra), "Deployment")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        return [a for a in container["args"] if a.startswith("--model-cache")]

    assert args() == []
    assert args("modelCache.hostPath=/var/lib/modelserve/models", "modelCache.maxSize=200Gi",
                "modelCache.enabled=true") == [
        "--model-cache-path=/var/lib/modelserve/models", "--model-cache-max-size=200Gi",
        "--model-cache-default"]
    bad = helm_template(helm, "--set", "modelCache.maxSize=lots", check=False)
    assert bad.returncode != 0 and "does not match pattern" in bad.stderr
