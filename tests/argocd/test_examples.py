"""examples/argocd: the chart syncs before the models, versions before deployments."""

from __future__ import annotations

import pathlib

import yaml

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "argocd"


def wave(obj: dict) -> int:
    return int(obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", 0))


def test_operator_chart_syncs_before_models():
    chart = yaml.safe_load((EXAMPLES / "modelserve-operator.yaml").read_text())
    models = yaml.safe_load((EXAMPLES / "models.yaml").read_text())
    assert chart["spec"]["source"]["path"] == "charts/modelserve"
    assert (EXAMPLES.parents[1] / chart["spec"]["source"]["path"] / "Chart.yaml").exists()
    assert (EXAMPLES.parents[1] / models["spec"]["source"]["path"]).is_dir()
    assert wave(chart) < wave(models)
    assert "ServerSideApply=true" in chart["spec"]["syncPolicy"]["syncOptions"]
    assert "SkipDryRunOnMissingResource=true" in models["spec"]["syncPolicy"]["syncOptions"]


def test_model_versions_sync_before_model_deployments():
    docs = [d for p in sorted((EXAMPLES / "models").glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d]
    versions = [wave(d) for d in docs if d["kind"] == "ModelVersion"]
    deployments = [wave(d) for d in docs if d["kind"] == "ModelDeployment"]
    assert versions and deployments
    assert max(versions) < min(deployments)
