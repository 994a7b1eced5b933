"""Dashboard, alert rules and Argo CD health snippets shipped by the chart."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from chart_render import CHART, ROOT, by_kind, render, tool

RUNTIME_METRICS = {
    "modelserve_requests_total", "modelserve_request_duration_seconds_bucket",
    "modelserve_gpu_utilization_percent", "modelserve_gpu_memory_used_bytes",
    "modelserve_gpu_memory_total_bytes", "modelserve_batch_size_bucket",
    "modelserve_queue_depth", "modelserve_queue_duration_seconds_total",
    "modelserve_queued_requests_total", "modelserve_inference_duration_seconds_sum",
    "modelserve_inference_duration_seconds_count", "modelserve_engine_roundtrip_seconds_total",
    "modelserve_engine_roundtrips_total",
}
OPERATOR_METRICS = {
    "modelserve_operator_modeldeployment_phase", "modelserve_operator_reconciles_total",
    "modelserve_operator_leader", "modelserve_operator_canary_weight",
}
KUBE_STATE_METRICS = {"kube_deployment_status_replicas_available", "kube_deployment_spec_replicas"}
PROMQL_WORDS = {"sum", "by", "rate", "avg", "max", "histogram_quantile", "ignoring",
                "group_left", "le", "label_values"}


def metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b(modelserve_\w+|kube_\w+)\b", expr))
    return names - PROMQL_WORDS


def test_dashboard_shows_what_the_issue_asks_for():
    dashboard = json.loads((CHART / "files" / "dashboard.json").read_text())
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for wanted in ("requests per second", "p50", "p99", "error rate", "gpu utilisation",
                   "gpu memory", "replicas", "canary weight"):
        assert wanted in titles, wanted
    used = {name for p in dashboard["panels"] for t in p["targets"]
            for name in metric_names(t["expr"])}
    assert used <= RUNTIME_METRICS | OPERATOR_METRICS | KUBE_STATE_METRICS, used
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_configmap_is_for_the_grafana_sidecar(helm):
    [cm] = [c for c in by_kind(render(helm), "ConfigMap")
            if c["metadata"]["name"].endswith("dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["modelserve.json"])["uid"] == "modelserve-overview"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = tool("promtool")
    if path is None:
        pytest.skip("promtool is missing: run hack/install-prometheus")
    return path


def test_alert_rules_pass_promtool(helm, promtool, tmp_path):
    docs = render(helm, values="monitoring-values.yaml")
    [rule] = by_kind(docs, "PrometheusRule")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"ModelServeHighLatency", "ModelServeHighErrorRate", "ModelServeGPUSaturated",
            "ModelServeRolloutStuck"} <= alerts
    used = {n for g in rule["spec"]["groups"] for r in g["rules"] for n in metric_names(r["expr"])}
    assert used <= RUNTIME_METRICS | OPERATOR_METRICS


def test_alert_thresholds_come_from_values(helm):
    docs = render(helm, "--set", "prometheusRule.enabled=true",
                  "--set-json", "prometheusRule.thresholds.p99LatencySeconds=0.25")
    [rule] = by_kind(docs, "PrometheusRule")
    latency = rule["spec"]["groups"][0]["rules"][0]
    assert latency["expr"].rstrip().endswith("> 0.25")


def test_argocd_snippets_carry_the_lua_files_verbatim(helm):
    lua = {kind: (CHART / "files" / "argocd" / f"{kind.lower()}-health.lua").read_text()
           for kind in ("ModelDeployment", "ModelVersion")}
    values = yaml.safe_load((CHART / "files" / "argocd" / "argocd-cm-values.yaml").read_text())
    [cm] = [c for c in by_kind(render(helm, values="monitoring-values.yaml"), "ConfigMap")
            if c["metadata"]["name"].endswith("argocd-health")]
    for kind, text in lua.items():
        key = f"resource.customizations.health.modelserve.io_{kind}"
        assert values["configs"]["cm"][key] == text
        assert cm["data"][key] == text.rstrip("\n")
    assert (ROOT / "docs" / "argocd.md").exists()
